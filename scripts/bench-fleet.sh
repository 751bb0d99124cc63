#!/usr/bin/env bash
# Fleet benchmark: on a fleet of N applied starter tenants (default 20) against moto,
# print side by side the wall time and peak memory (whole process tree) of
#   1. a naive sequential `terraform plan` loop over the tenants' roots (the baseline),
#   2. `tenantctl plan --all --refresh`,
#   3. `tenantctl apply --all` with nothing changed,
#   4. `tenantctl verify --all`.
# Usage: scripts/bench-fleet.sh [N]      (starts and stops its own moto and PostgreSQL)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-20}
work=$(mktemp -d /tmp/tenantctl-bench-fleet.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
(cd "$here" && cargo build --quiet)
tenantctl="$here/target/debug/tenantctl"
moto_port=$(free_port); pg_port=$(free_port); pg_dir=$(mktemp -d /tmp/tenantctl-bench-pg.XXXXXX)
cleanup() { kill "${moto_pid:-0}" 2>/dev/null || true; "$here/scripts/local_postgres.sh" stop "$pg_dir"; rm -rf "$pg_dir"; }
trap cleanup EXIT
python3 "$here/scripts/moto_server.py" --host 127.0.0.1 --port "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$moto_port") 2>/dev/null && break; sleep 0.2; done
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
echo "setting up: applying $n tenants (not measured) ..." >&2
"$tenantctl" -q apply --all >/dev/null

cores=$(nproc)
echo
echo "fleet of $n applied starter tenants, $cores cores, moto on loopback"
printf '%-46s %9s %10s %5s\n' "run" "wall (s)" "peak MiB" "exit"
row() { IFS=$'\t' read -r label wall peak code; printf '%-46s %9s %10s %5s\n' "$label" "$wall" "$peak" "$code"; }
naive() {
  for d in .tenantctl/roots/*/; do
    (cd "$d" && terraform plan -input=false -lock=false -detailed-exitcode >/dev/null) || [ $? = 2 ]
  done
}
export -f naive
python3 "$here/scripts/measure.py" "baseline: sequential terraform plan loop" -- bash -c naive | row
python3 "$here/scripts/measure.py" "tenantctl plan --all --refresh" -- "$tenantctl" -q plan --all --refresh | row
python3 "$here/scripts/measure.py" "tenantctl apply --all (nothing changed)" -- "$tenantctl" -q apply --all | row
python3 "$here/scripts/measure.py" "tenantctl verify --all" -- "$tenantctl" -q verify --all | row
