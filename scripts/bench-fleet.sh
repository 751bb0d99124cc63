#!/usr/bin/env bash
# Fleet benchmark: N starter tenants (default 50) applied against moto, first each in its
# own root, then in state cells. Prints side by side the wall time and peak memory
# (whole process tree) of
#   own roots:  apply of the N new tenants, the naive sequential `terraform plan` loop
#               over their roots (the baseline), `tenantctl plan --all --refresh`, and
#               `add`, `apply <id> --refresh` and `remove` of one tenant in its own root;
#   cells:      `cells adopt --all` (state moved, nothing recreated), `plan --all
#               --refresh`, the no-op `apply --all`, `verify --all`, `add` of one tenant
#               into a cell holding all the others (which fills it), `apply <id>
#               --refresh` and `remove` of one tenant of that cell, and a fleet-wide
#               change (a starter profile value) applied to every tenant.
# Usage: scripts/bench-fleet.sh [N]      (starts and stops its own moto and PostgreSQL)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-50}
work=$(mktemp -d /tmp/tenantctl-bench-fleet.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
(cd "$here" && cargo build --quiet --bin tenantctl)
tenantctl="$here/target/debug/tenantctl"
moto_port=$(free_port); pg_port=$(free_port); pg_dir=$(mktemp -d /tmp/tenantctl-bench-pg.XXXXXX)
cleanup() { kill "${moto_pid:-0}" 2>/dev/null || true; "$here/scripts/local_postgres.sh" stop "$pg_dir"; rm -rf "$pg_dir"; }
trap cleanup EXIT
python3 "$here/scripts/moto_server.py" --host 127.0.0.1 --port "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 300); do (echo >/dev/tcp/127.0.0.1/"$moto_port") 2>/dev/null && break; sleep 0.2; done
TENANTCTL_DATABASE_URL=$("$here/scripts/local_postgres.sh" start "$pg_dir" "$pg_port")
export TENANTCTL_DATABASE_URL
printf 'provider_installation {\n  filesystem_mirror {\n    path    = "%s"\n    include = ["registry.terraform.io/hashicorp/*"]\n  }\n  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n' "${TF_PLUGIN_MIRROR:-/opt/tf-plugins}" >"$work/terraform.rc"
export TF_CLI_CONFIG_FILE="$work/terraform.rc" CHECKPOINT_DISABLE=1 CI=1
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
cd "$work"
"$tenantctl" -q init --local
sed -i "s/port = 5432/port = $pg_port/g" tenantctl.toml
"$tenantctl" -q platform apply >/dev/null
for i in $(seq -w 1 "$n"); do printf 'id = "bench%s"\ntier = "starter"\n' "$i" >"tenants/bench$i.toml"; done

cores=$(nproc)
echo
echo "fleet of $n starter tenants, $cores cores, moto on loopback, debug build"
printf '%-58s %9s %10s %5s\n' "run" "wall (s)" "peak MiB" "exit"
results="$work/results.tsv"
row() { IFS=$'\t' read -r label wall peak code; printf '%s\t%s\t%s\t%s\n' "$label" "$wall" "$peak" "$code" >>"$results"; printf '%-58s %9s %10s %5s\n' "$label" "$wall" "$peak" "$code"; }
measure() { python3 "$here/scripts/measure.py" "$@" | row; }

# Own roots: one Terraform root (and state) per tenant.
measure "own roots: apply --all ($n new tenants)" -- "$tenantctl" -q apply --all
naive() {
  for d in .tenantctl/roots/*/; do
    (cd "$d" && terraform plan -input=false -lock=false -detailed-exitcode >/dev/null) || [ $? = 2 ]
  done
}
export -f naive
measure "own roots: naive sequential terraform plan loop" -- bash -c naive
measure "own roots: plan --all --refresh" -- "$tenantctl" -q plan --all --refresh
measure "own roots: add 1 tenant" -- "$tenantctl" -q add solo-own --tier starter
measure "own roots: apply 1 tenant --refresh" -- "$tenantctl" -q apply bench01 --refresh
measure "own roots: remove 1 tenant" -- "$tenantctl" -q --yes remove solo-own

# Cells: every tenant in one cell (size n + 1, so the next add fills it).
printf '\n[cells]\nenabled = true\nsize = %s\n' "$((n + 1))" >>tenantctl.toml
measure "cells: cells adopt --all ($n tenants, state moved)" -- "$tenantctl" -q cells adopt --all
measure "cells: plan --all --refresh" -- "$tenantctl" -q plan --all --refresh
measure "cells: apply --all (nothing changed)" -- "$tenantctl" -q apply --all
measure "cells: verify --all" -- "$tenantctl" -q verify --all
measure "cells: add 1 tenant into a cell of $n" -- "$tenantctl" -q add solo-cell --tier starter
measure "cells: apply 1 tenant --refresh (cell of $((n + 1)))" -- "$tenantctl" -q apply bench01 --refresh
measure "cells: remove 1 tenant (cell of $((n + 1)))" -- "$tenantctl" -q --yes remove solo-cell
# A fleet-wide change: every starter tenant's task definition changes.
printf '\n[tiers.starter]\nrate_limit_per_minute = 150\n' >>tenantctl.toml
measure "cells: fleet-wide change applied (apply --all)" -- "$tenantctl" -q apply --all

python3 - "$results" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    label, wall, peak, code = line.rstrip("\n").split("\t")
    rows[label] = float(wall)
naive = next(v for k, v in rows.items() if "naive" in k)
own = next(v for k, v in rows.items() if k.startswith("own roots: plan"))
cells = next(v for k, v in rows.items() if k.startswith("cells: plan"))
print()
print(f"fleet plan: naive loop {naive:.1f} s, own roots {own:.1f} s, cells {cells:.1f} s: "
      f"cells {naive / cells:.1f}x faster than the naive loop, {own / cells:.1f}x faster than own roots")
for what in ("add", "apply 1", "remove"):
    o = next(v for k, v in rows.items() if k.startswith(f"own roots: {what}"))
    c = next(v for k, v in rows.items() if k.startswith(f"cells: {what}"))
    print(f"{what} of one tenant: in a cell {c:.1f} s vs own root {o:.1f} s ({c / o:.2f}x)")
EOF
