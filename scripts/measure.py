#!/usr/bin/env python3
"""Run a command; print its wall time and the peak memory of its whole process tree.

Usage: measure.py LABEL -- COMMAND [ARGS...]

Peak memory is the largest sum of RSS over the command and all its descendants, sampled
every 50 ms from /proc: for tenantctl that includes the Terraform and provider processes
it runs in parallel, which getrusage's max-RSS-of-one-child would miss.
Prints one line: LABEL<TAB>wall_s<TAB>peak_mib<TAB>exit_code
"""
import os
import subprocess
import sys
import time


def children_map():
    kids = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(pid))
        except (OSError, ValueError, IndexError):
            pass
    return kids


def tree_rss_kib(root):
    kids = children_map()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(kids.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def main():
    if "--" not in sys.argv:
        sys.exit(__doc__)
    i = sys.argv.index("--")
    label, cmd = " ".join(sys.argv[1:i]), sys.argv[i + 1:]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kib(proc.pid))
        time.sleep(0.05)
    wall = time.monotonic() - start
    print(f"{label}\t{wall:.1f}\t{peak / 1024:.0f}\t{proc.returncode}", flush=True)


if __name__ == "__main__":
    main()
