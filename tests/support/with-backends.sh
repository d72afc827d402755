#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL and Redis on free loopback ports, and tears them
# down afterwards, also when the command fails or is interrupted.
#
#   tests/support/with-backends.sh cargo test --workspace
#
# Exports PHANTOM_TEST_POSTGRES_URL, PHANTOM_TEST_REDIS_URL and PHANTOM_REQUIRE_BACKENDS=1;
# PHANTOM_TEST_POSTGRES_CTL, a script that stops and starts that PostgreSQL (`stop` | `start`),
# for the tests of what happens while it is down; and PHANTOM_TEST_HELM, the pinned helm of
# deploy/tools.sh, for the tests that render the chart.
# Missing servers (and nmap, which the scanner tests use) are installed from Debian packages
# when running as root; otherwise the script stops and says what to install.
set -euo pipefail

log() { printf 'with-backends: %s\n' "$*" >&2; }

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

ensure_packages() {
  local missing=()
  pg_bin >/dev/null || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v nmap >/dev/null || missing+=(nmap)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "missing: ${missing[*]}. Install them (sudo apt-get install ${missing[*]}) and re-run."
    exit 1
  fi
  log "installing ${missing[*]} from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian packages start system-wide servers; the tests use their own instances.
  service redis-server stop >/dev/null 2>&1 || true
  service postgresql stop >/dev/null 2>&1 || true
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

ensure_packages

work=$(mktemp -d /tmp/phantom-backends.XXXXXX)
chmod 755 "$work"
pg_dir="$work/pg"
pg_pid=""
redis_pid=""
cleanup() {
  local rc=$?
  if [ -n "$pg_pid" ]; then
    run_pg "$(pg_bin)/pg_ctl" -D "$pg_dir" -m immediate stop >/dev/null 2>&1 || true
  fi
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT INT TERM

# PostgreSQL refuses to run as root: run it as the `postgres` user when we are root.
run_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_port=$(free_port)
mkdir -p "$pg_dir"
[ "$(id -u)" -eq 0 ] && chown postgres "$pg_dir"
run_pg "$(pg_bin)/initdb" -D "$pg_dir" -A trust -U postgres >/dev/null
run_pg "$(pg_bin)/pg_ctl" -D "$pg_dir" -l "$pg_dir/log" -w \
  -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
pg_pid=started
log "PostgreSQL on 127.0.0.1:$pg_port"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 50); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
log "Redis on 127.0.0.1:$redis_port"

cat >"$work/pg-ctl" <<CTL
#!/usr/bin/env bash
# Stops or starts the throwaway PostgreSQL of this test run.
set -euo pipefail
run() { if [ "\$(id -u)" -eq 0 ]; then runuser -u postgres -- "\$@"; else "\$@"; fi; }
case "\$1" in
  stop) run "$(pg_bin)/pg_ctl" -D "$pg_dir" -m fast -w stop >/dev/null ;;
  start) run "$(pg_bin)/pg_ctl" -D "$pg_dir" -l "$pg_dir/log" -w \\
    -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null ;;
  *) echo "usage: \$0 stop|start" >&2; exit 2 ;;
esac
CTL
chmod 755 "$work/pg-ctl"

# The pinned helm the chart checks use (deploy/tools.sh), for the tests that render the chart.
helm=$(TOOLS_ONLY_HELM=1 bash -c 'set -euo pipefail; source deploy/tools.sh; echo "$helm"')

export PHANTOM_TEST_POSTGRES_CTL="$work/pg-ctl"
export PHANTOM_TEST_HELM="$helm"
export PHANTOM_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
export PHANTOM_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
export PHANTOM_REQUIRE_BACKENDS=1
"$@"
