#!/usr/bin/env bash
# Fleet-scale benchmark without AWS: tenantctl's own work at 1,000 and 10,000 tenants.
# For each size, prints the wall time and peak memory (whole process tree) of
#   1. `render --all` into an empty work dir (every root written),
#   2. `apply --all` with nothing changed (fingerprints only: no Terraform, no AWS call),
#   3. `list`,
#   4. `plan --changed` with one changed tenant (one real `terraform plan` against moto:
#      of its own root, or of its cell with only its module instance targeted),
#   5. selection by tier and shard (`render --tier growth --shard 3/8`).
# "Applied" is simulated: the records a successful apply writes (and, with cells, the
# cell assignment) are written from what `render --output json` prints (fingerprint,
# cell), since 10,000 real applies cannot run here.
# Each size runs twice: every tenant in its own root, then the pooled tenants in state
# cells of 50 (`[cells] enabled = true`).
# Usage: scripts/bench-scale.sh [SIZES...]     (default: 1000 10000; release build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sizes=("${@:-1000 10000}")
read -r -a sizes <<<"${sizes[*]}"
(cd "$here" && cargo build --release --quiet --bin tenantctl)
tenantctl="$here/target/release/tenantctl"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
base=$(mktemp -d /tmp/tenantctl-bench-scale.XXXXXX)
moto_port=$(free_port)
cleanup() { kill "${moto_pid:-0}" 2>/dev/null || true; rm -rf "$base"; }
trap cleanup EXIT
python3 "$here/scripts/moto_server.py" --host 127.0.0.1 --port "$moto_port" >"$base/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 300); do (echo >/dev/tcp/127.0.0.1/"$moto_port") 2>/dev/null && break; sleep 0.2; done
printf 'provider_installation {\n  filesystem_mirror {\n    path    = "%s"\n    include = ["registry.terraform.io/hashicorp/*"]\n  }\n  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n' "${TF_PLUGIN_MIRROR:-/opt/tf-plugins}" >"$base/terraform.rc"
export TF_CLI_CONFIG_FILE="$base/terraform.rc" CHECKPOINT_DISABLE=1 CI=1
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
# `apply` checks the admin credential is set before any work; nothing connects to it.
export TENANTCTL_DATABASE_URL="postgresql://admin:unused@127.0.0.1:1/app"

echo
echo "fleet scale without AWS, release build, $(nproc) cores"
printf '%-8s %-6s %-40s %9s %10s %5s\n' "tenants" "roots" "run" "wall (s)" "peak MiB" "exit"
for n in "${sizes[@]}"; do
for mode in own cells; do
  work="$base/fleet-$n-$mode"
  mkdir -p "$work"
  cd "$work"
  "$tenantctl" -q init --local >/dev/null
  # What `platform apply` would record, set in the config instead.
  python3 - <<'EOF'
import re
p = "tenantctl.toml"
s = open(p).read()
s = re.sub(r"(?m)^create_load_balancer = .*\n", "", s)
s = s.replace("[platform]\n", '[platform]\ncreate_load_balancer = false\nhosted_zone_id = "Z0123456789EXAMPLE"\ncluster_arn = "arn:aws:ecs:us-east-1:123456789012:cluster/bench"\nvpc_id = "vpc-0123456789abcdef0"\nsubnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]\nservice_security_group_ids = ["sg-0123456789abcdef0"]\n', 1)
open(p, "w").write(s)
EOF
  if [ "$mode" = cells ]; then printf '\n[cells]\nenabled = true\nsize = 50\n' >>tenantctl.toml; fi
  # 60 % starter, 30 % growth, 10 % enterprise.
  python3 - "$n" <<'EOF'
import sys
n = int(sys.argv[1])
for i in range(1, n + 1):
    tier = "enterprise" if i % 10 == 0 else ("growth" if i % 10 >= 7 else "starter")
    with open(f"tenants/t{i:05d}.toml", "w") as f:
        f.write(f'id = "t{i:05d}"\ntier = "{tier}"\n')
EOF
  row() { IFS=$'\t' read -r label wall peak code; printf '%-8s %-6s %-40s %9s %10s %5s\n' "$n" "$mode" "$label" "$wall" "$peak" "$code"; }
  python3 "$here/scripts/measure.py" "render --all (empty work dir)" -- "$tenantctl" -q render --all | row
  "$tenantctl" -q render --all --output json >"$work/render.json"
  # Records as a successful apply of every tenant leaves them.
  python3 - "$work/render.json" <<'EOF'
import json, os, sys
rows = json.load(open(sys.argv[1]))
os.makedirs(".tenantctl/records", exist_ok=True)
cells = {}
for r in rows:
    tier = open(f"tenants/{r['tenant']}.toml").read().split('tier = "')[1].split('"')[0]
    if r.get("cell"):
        # As `apply` records the placement: slots in id order.
        cells.setdefault(r["cell"].removeprefix("cell-"), []).append(r["tenant"])
    rec = {"last_apply": {"at": "2026-12-01T00:00:00Z", "fingerprint": r["fingerprint"], "provider_lock": None, "tier": tier}}
    with open(f".tenantctl/records/{r['tenant']}.json", "w") as f:
        json.dump(rec, f)
if cells:
    os.makedirs(".tenantctl/records/cells", exist_ok=True)
    with open(".tenantctl/records/cells/assignment.json", "w") as f:
        json.dump({"cells": cells}, f)
EOF
  python3 "$here/scripts/measure.py" "apply --all (nothing changed)" -- "$tenantctl" -q apply --all | row
  python3 "$here/scripts/measure.py" "list" -- "$tenantctl" -q list | row
  # One tenant's inputs changed since its last apply.
  python3 -c 'import json; p=".tenantctl/records/t00001.json"; r=json.load(open(p)); r["last_apply"]["fingerprint"]="stale"; json.dump(r, open(p,"w"))'
  python3 "$here/scripts/measure.py" "plan --changed (1 changed tenant)" -- "$tenantctl" -q plan --changed | row
  python3 "$here/scripts/measure.py" "render --tier growth --shard 3/8" -- "$tenantctl" -q render --tier growth --shard 3/8 | row
  cd "$base"
  rm -rf "$work"
done
done
