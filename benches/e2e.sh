#!/usr/bin/env bash
# End-to-end, on loopback, run by hand (not in CI):
#   the reverse_proxy example with the whole GatewayLayer (the `production` profile:
#   fat LTO; PROFILE=release for the plain release build),
#   the same proxy core and client with no gateway layer (benches/baselines/bare_proxy.rs,
#   the `bare_proxy` example: every client error a plain 502),
#   nginx as a reverse proxy with one worker,
# in front of nginx serving a fixed small body; interleaved rounds of wrk against
# each, then the same with the upstream port closed (every answer a 502), then
# three replicas of which one is dead (its port closed).
#
# Besides requests/s and p99, each row has the gateway process's CPU time per
# request: its user + system time (/proc/PID/stat, before and after each wrk run)
# over the requests wrk completed, the median of the rounds. On a shared machine
# it is steadier than throughput.
#
#   bash benches/e2e.sh                  # DURATION=10s ROUNDS=3 CONNECTIONS=32
#   DURATION=5s ROUNDS=2 bash benches/e2e.sh
#   THREADS=2 bash benches/e2e.sh        # each gateway with two serving threads
#   PIN=1 bash benches/e2e.sh            # the proxies on CPU 1, wrk and the upstream
#                                        # on CPU 0 (taskset): less scheduler noise
#
# Installs wrk and nginx (Debian packages) if missing; stops everything it starts.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
UPSTREAM=18080 NGINX=18081 NGINX_DEAD=18082 FULL=18083 BARE=18084 FULL_DEAD=18085 BARE_DEAD=18086 DEAD=18089
UPSTREAM2=18090 UPSTREAM3=18091 FULL_SET=18087 NGINX_SET=18088

. benches/need.sh
need wrk wrk
need nginx nginx

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for conf in upstream proxy; do
    [ -f "$work/$conf.pid" ] && kill "$(cat "$work/$conf.pid")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# PIN=1: the gateway under test gets a core of its own; the load and the upstream
# share the other. Every proxy (nginx's included) is pinned the same way.
# (Prefixes, not functions: `taskset` execs the command, so `$!` stays its PID.)
proxy_cpu=() load_cpu=()
if [ -n "${PIN:-}" ]; then
  need taskset util-linux
  proxy_cpu=(taskset -c 1) load_cpu=(taskset -c 0)
fi

nginx_conf() { # name, server blocks
  cat > "$work/$1.conf" <<EOF
worker_processes 1;
daemon on;
pid $work/$1.pid;
error_log $work/$1.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/$1-body; proxy_temp_path $work/$1-proxy;
  fastcgi_temp_path $work/$1-fcgi; uwsgi_temp_path $work/$1-uwsgi; scgi_temp_path $work/$1-scgi;
  $2
}
EOF
  if [ "$1" = proxy ]; then
    "${proxy_cpu[@]}" nginx -p "$work" -c "$work/$1.conf"
  else
    "${load_cpu[@]}" nginx -p "$work" -c "$work/$1.conf"
  fi
}

nginx_conf upstream "server { listen 127.0.0.1:$UPSTREAM; listen 127.0.0.1:$UPSTREAM2; location / { return 200 'hello, world\n'; } }"
nginx_conf proxy "
  upstream live { server 127.0.0.1:$UPSTREAM; keepalive 64; }
  upstream dead { server 127.0.0.1:$DEAD; }
  upstream trio { server 127.0.0.1:$UPSTREAM; server 127.0.0.1:$UPSTREAM2; server 127.0.0.1:$UPSTREAM3; keepalive 64; }
  server { listen 127.0.0.1:$NGINX_SET; location / { proxy_pass http://trio; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }
  server { listen 127.0.0.1:$NGINX; location / { proxy_pass http://live; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }
  server { listen 127.0.0.1:$NGINX_DEAD; location / { proxy_pass http://dead; } }"

# PROFILE=release for a quicker build (see `[profile.production]` in Cargo.toml).
PROFILE=${PROFILE:-production}
cargo build -q --profile "$PROFILE" --example reverse_proxy --example bare_proxy
bins=${CARGO_TARGET_DIR:-target}/$PROFILE/examples
declare -A pid_of # port -> the gateway process serving it
# THREADS serving threads per gateway (default 1: the nginx proxy has one worker).
start() { # binary, port, flags
  local bin=$1 port=$2; shift 2
  "${proxy_cpu[@]}" "$bins/$bin" --listen 127.0.0.1:$port --threads "${THREADS:-1}" "$@" >/dev/null 2>&1 & pids+=($!)
  pid_of[$port]=$!
}
start reverse_proxy $FULL --upstream http://127.0.0.1:$UPSTREAM
start bare_proxy $BARE --upstream http://127.0.0.1:$UPSTREAM
start reverse_proxy $FULL_DEAD --upstream http://127.0.0.1:$DEAD
start bare_proxy $BARE_DEAD --upstream http://127.0.0.1:$DEAD
start reverse_proxy $FULL_SET --upstream http://127.0.0.1:$UPSTREAM \
  --upstream http://127.0.0.1:$UPSTREAM2 --upstream http://127.0.0.1:$UPSTREAM3
# nginx's proxy: its one worker does the work (the master only waits).
worker=$(pgrep -P "$(cat "$work/proxy.pid")" | head -1)
for port in $NGINX $NGINX_DEAD $NGINX_SET; do pid_of[$port]=$worker; done
for port in $UPSTREAM $NGINX $FULL $BARE $FULL_DEAD $BARE_DEAD $FULL_SET $NGINX_SET; do
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

# A process's user + system CPU time so far, in clock ticks (fields 14 and 15 of
# /proc/PID/stat, counted after the `)` that ends its name).
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# wrk's requests/sec, p99 (ms) and the gateway's CPU µs per request for one run.
measure() { # port
  local pid=${pid_of[$1]} before after out
  before=$(ticks "$pid")
  out=$("${load_cpu[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$1/")
  after=$(ticks "$pid")
  awk -v cpu=$((after - before)) -v hz="$hz" '
    /requests in/ { n = $1 }
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } p99 = v }
    END { printf "%s %s %.1f\n", rps, p99, (n > 0 ? cpu / hz * 1e6 / n : 0) }' <<<"$out"
}

declare -A rps p99 cpu
scenario() { # title, then name=port pairs
  local title=$1; shift
  for round in $(seq "$ROUNDS"); do
    for pair in "$@"; do
      local name=${pair%%=*} port=${pair##*=}
      read -r r p c < <(measure "$port")
      rps[$name]="${rps[$name]:-} $r"; p99[$name]="${p99[$name]:-} $p"; cpu[$name]="${cpu[$name]:-} $c"
    done
  done
  echo
  echo "$title ($ROUNDS interleaved rounds of $DURATION, $CONNECTIONS connections; median of rounds)"
  printf "  %-22s %12s %10s %16s\n" gateway "requests/s" "p99 ms" "CPU µs/request"
  for pair in "$@"; do
    local name=${pair%%=*}
    printf "  %-22s %12s %10s %16s\n" "$name" "$(median ${rps[$name]})" "$(median ${p99[$name]})" "$(median ${cpu[$name]})"
  done
}
median() { printf "%s\n" "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

echo "machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%d); profile $PROFILE${PIN:+; pinned: proxies on CPU 1, wrk and upstream on CPU 0}"
scenario "success path" full_stack=$FULL bare=$BARE nginx=$NGINX
full=$(median ${rps[full_stack]}) bare=$(median ${rps[bare]}) ngx=$(median ${rps[nginx]})
echo "  throughput: full stack / bare: $(ratio "$full" "$bare")   full stack / nginx: $(ratio "$full" "$ngx")"
full=$(median ${cpu[full_stack]}) bare=$(median ${cpu[bare]}) ngx=$(median ${cpu[nginx]})
echo "  CPU per request: full stack / bare: $(ratio "$full" "$bare")   full stack / nginx: $(ratio "$full" "$ngx")"
# The same ratios round by round (each round's three runs are minutes apart at
# most): how often a round meets the targets, not only the medians.
per_round() { # numerator name, denominator name, values array name
  local -n values=$3
  paste <(tr ' ' '\n' <<<"${values[$1]}" | sed '/^$/d') <(tr ' ' '\n' <<<"${values[$2]}" | sed '/^$/d') |
    awk '{ printf "%.3f ", $1 / $2 }'
}
echo "  per round, full stack / nginx: CPU $(per_round full_stack nginx cpu)  throughput $(per_round full_stack nginx rps)"
echo "  per round, bare / nginx:       CPU $(per_round bare nginx cpu)  throughput $(per_round bare nginx rps)"
scenario "failure path (upstream port closed: every answer a 502)" full_stack_502=$FULL_DEAD bare_502=$BARE_DEAD nginx_502=$NGINX_DEAD
full=$(median ${rps[full_stack_502]}) bare=$(median ${rps[bare_502]}) ngx=$(median ${rps[nginx_502]})
echo "  full stack / bare: $(ratio "$full" "$bare")   full stack / nginx: $(ratio "$full" "$ngx")"

# Three replicas, the third's port closed: every answer should be a 200.
echo
echo "one of three replicas dead ($DURATION, $CONNECTIONS connections, one run each)"
printf "  %-22s %12s %10s %14s\n" gateway "requests/s" "p99 ms" "non-2xx"
for pair in full_stack_set=$FULL_SET nginx_set=$NGINX_SET; do
  name=${pair%%=*} port=${pair##*=}
  out=$("${load_cpu[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$port/")
  r=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
  p=$(awk '/^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } print v }' <<<"$out")
  e=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
  printf "  %-22s %12s %10s %14s\n" "$name" "$r" "$p" "${e:-0}"
done
