#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL cluster on a loopback port.
#
#   scripts/local_postgres.sh start DIR PORT   → prints the admin URL on stdout
#   scripts/local_postgres.sh stop DIR
#
# initdb refuses to run as root, so as root the cluster belongs to the `postgres` user.
# Host connections use scram-sha-256, so tenant logins are really checked.
set -euo pipefail
cmd=${1:?usage: local_postgres.sh start DIR PORT | stop DIR}
dir=${2:?missing DIR}
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
start)
  port=${3:?missing PORT}
  command -v initdb >/dev/null || { echo "initdb not found: install PostgreSQL 15 (postgresql-15)" >&2; exit 1; }
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  pw=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '%s\n' "$pw" > "$dir/.pw"
  [ "$(id -u)" = 0 ] && chown postgres "$dir/.pw"
  as_pg initdb -D "$dir/data" -U postgres --pwfile="$dir/.pw" --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  as_pg pg_ctl -D "$dir/data" -l "$dir/postgres.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir' -c max_connections=300 -c fsync=off" start >/dev/null \
    || { cat "$dir/postgres.log" >&2; exit 1; }
  as_pg psql -h "$dir" -p "$port" -U postgres -d postgres -qAtc "CREATE DATABASE app" >/dev/null
  echo "postgres://postgres:$pw@127.0.0.1:$port/app"
  ;;
stop)
  [ -d "$dir/data" ] && as_pg pg_ctl -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  ;;
*) echo "usage: local_postgres.sh start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
