#!/usr/bin/env bash
# Instructions per request of the gateway processes end to end, run by hand (not
# in CI): `reverse_proxy` (the whole stack) and `bare_proxy` (the proxy core, no
# layers), each with one serving thread under callgrind, in front of nginx serving
# a fixed small body on loopback; wrk keeps 8 connections busy for DURATION. The
# counters are zeroed after a warm-up, so start-up is not counted; the whole
# process is (hyper, tokio, the allocator), the kernel is not. Deterministic where
# `e2e.sh`'s CPU times are not: the figure to compare two commits by.
#
#   bash benches/e2e_instructions.sh                 # DURATION=15s
#   DURATION=5s bash benches/e2e_instructions.sh
#   KEEP=/tmp/cg bash benches/e2e_instructions.sh     # keep the profiles there
#                                                     # (callgrind_annotate them)
#   PROFILE=release bash benches/e2e_instructions.sh  # the quicker build; the
#                                                     # default is `production`
#   CARGO_PROFILE_PRODUCTION_DEBUG=line-tables-only KEEP=/tmp/cg bash ...
#                                                     # profiles with source lines
#
# Installs valgrind, wrk and nginx (Debian packages) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15s}
UPSTREAM=18180 FULL=18183 BARE=18184

. benches/need.sh
need wrk wrk
need nginx nginx
need valgrind valgrind

work=$(mktemp -d)
out=${KEEP:-$work}
mkdir -p "$out"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/upstream.pid" ] && kill "$(cat "$work/upstream.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

cat > "$work/upstream.conf" <<EOF
worker_processes 1;
daemon on;
pid $work/upstream.pid;
error_log $work/upstream.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/b; proxy_temp_path $work/p;
  fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  server { listen 127.0.0.1:$UPSTREAM; location / { return 200 'hello, world\n'; } }
}
EOF
nginx -p "$work" -c "$work/upstream.conf"

# PROFILE=release for a quicker build (see `[profile.production]` in Cargo.toml).
PROFILE=${PROFILE:-production}
cargo build -q --profile "$PROFILE" --example reverse_proxy --example bare_proxy
bins=${CARGO_TARGET_DIR:-target}/$PROFILE/examples

echo "machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%d); commit $(git rev-parse --short HEAD); profile $PROFILE"
printf "  %-16s %10s %26s\n" gateway requests "instructions per request"
for pair in reverse_proxy=$FULL bare_proxy=$BARE; do
  bin=${pair%%=*} port=${pair##*=}
  valgrind --tool=callgrind --callgrind-out-file="$out/$bin.cg" \
    "$bins/$bin" --listen 127.0.0.1:$port --threads 1 --upstream http://127.0.0.1:$UPSTREAM \
    >"$work/$bin.log" 2>&1 &
  pid=$!
  pids+=($pid)
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.3; done
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/"; done
  callgrind_control -z "$pid" >/dev/null 2>&1
  n=$(wrk -t1 -c8 -d"$DURATION" "http://127.0.0.1:$port/" | awk '/requests in/ { print $1 }')
  # The dump after the zeroing is `<file>.1`: the load alone.
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill -INT "$pid"
  wait "$pid" 2>/dev/null || true
  total=$(callgrind_annotate "$out/$bin.cg.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  printf "  %-16s %10s %26s\n" "$bin" "$n" "$((total / n))"
done
