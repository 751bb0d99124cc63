#!/usr/bin/env bash
# The main job, end to end, against the local AWS emulator and a local PostgreSQL:
# start moto (with the RDS fix) and PostgreSQL, apply the platform, add one tenant of each
# tier, migrate their databases, verify and list them, then stop what it started.
# The work dir is kept (its path is printed) so you can look around.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${TENANTCTL_QUICKSTART_DIR:-$(mktemp -d /tmp/tenantctl-quickstart.XXXXXX)}
mkdir -p "$work"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "==> building tenantctl"
(cd "$here" && cargo build --quiet)
tenantctl="$here/target/debug/tenantctl"

moto_port=$(free_port)
pg_port=$(free_port)
pg_dir=$(mktemp -d /tmp/tenantctl-quickstart-pg.XXXXXX)
cleanup() {
  echo "==> stopping moto and PostgreSQL"
  [ -n "${moto_pid:-}" ] && kill "$moto_pid" 2>/dev/null || true
  "$here/scripts/local_postgres.sh" stop "$pg_dir" || true
  rm -rf "$pg_dir"
}
trap cleanup EXIT

echo "==> starting moto on 127.0.0.1:$moto_port"
python3 "$here/scripts/moto_server.py" --host 127.0.0.1 --port "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 100); do
  (echo >/dev/tcp/127.0.0.1/"$moto_port") 2>/dev/null && break
  sleep 0.2
done

echo "==> starting PostgreSQL on 127.0.0.1:$pg_port"
TENANTCTL_DATABASE_URL=$("$here/scripts/local_postgres.sh" start "$pg_dir" "$pg_port")
export TENANTCTL_DATABASE_URL

# Terraform finds the AWS provider in the local filesystem mirror (no registry access).
cat >"$work/terraform.rc" <<RC
provider_installation {
  filesystem_mirror {
    path    = "${TF_PLUGIN_MIRROR:-/opt/tf-plugins}"
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/*"]
  }
}
RC
export TF_CLI_CONFIG_FILE="$work/terraform.rc" CHECKPOINT_DISABLE=1
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test

cd "$work"
set -x
"$tenantctl" init --local --force
sed -i "s/port = 5432/port = $pg_port/g" tenantctl.toml
mkdir -p migrations && cp "$here"/migrations/*.sql migrations/
"$tenantctl" platform apply >/dev/null
"$tenantctl" add acme-corp --tier enterprise
"$tenantctl" add globex --tier growth
"$tenantctl" add initech --tier starter
"$tenantctl" db migrate
"$tenantctl" verify --all
"$tenantctl" list
"$tenantctl" db status
set +x
echo "==> done; work dir: $work"
