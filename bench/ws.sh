#!/usr/bin/env bash
# WebSocket relaying: echo round trips against rama's ws_echo directly, and through rama's
# ws_proxy (a frame-level relay: every message parsed, passed through the hook, re-framed),
# nginx (`proxy_pass` with `Upgrade`, bytes after the handshake) and haproxy (`mode http`,
# tunnel after the upgrade), side by side in one run on 127.0.0.1. The load generator is
# `ws-load` (tests/bin/ws_load.rs): raw frames, N connections, a window of messages in flight.
# Every server and proxy gets one thread (one nginx worker, one haproxy thread).
# Installs nginx and haproxy with apt if missing.
#
#   bench/ws.sh                       # 5 runs of 5 s per path, medians
#   RUNS=3 SECS=4 CONNS=32 SIZE=128 WINDOW=8 bench/ws.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

RUNS=${RUNS:-5}
SECS=${SECS:-5}
CONNS=${CONNS:-32}
SIZE=${SIZE:-128}
WINDOW=${WINDOW:-8}
TARGET=${CARGO_TARGET_DIR:-target}/release
ECHO=27100
RAMA=27101
NGINX=27102
HAPROXY=27103

want nginx
want haproxy
install_missing
cargo build --release -q --example ws_echo --example ws_proxy
cargo build --release -q -p rama-e2e --bin ws-load

start_work

RUST_LOG=warn "$TARGET"/examples/ws_echo --listen 127.0.0.1:$ECHO --threads 1 >/dev/null \
  2>"$work/echo.log" & pids+=($!)
# The example logs every message at info; the bench measures the relay, not the log.
RUST_LOG=warn "$TARGET"/examples/ws_proxy --listen 127.0.0.1:$RAMA --threads 1 \
  --upstream 127.0.0.1:$ECHO >/dev/null 2>"$work/rama.log" & pids+=($!)
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<CFG
$(nginx_main nginx 1)
http {
  access_log off;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$NGINX;
    location / {
      proxy_pass http://127.0.0.1:$ECHO;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 60s;
    }
  }
}
CFG
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
cat > "$work/haproxy.cfg" <<CFG
global
  maxconn 4000
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 60s
listen ws
  bind 127.0.0.1:$HAPROXY
  server echo 127.0.0.1:$ECHO
CFG
haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!)
for p in $ECHO $RAMA $NGINX $HAPROXY; do wait_port $p; done
same_autogroup $ECHO $RAMA $NGINX $HAPROXY

declare -A result
measure() { # name port
  local rate=() p50=() p99=() out
  for _ in $(seq "$RUNS"); do
    out=$("$TARGET"/ws-load --target 127.0.0.1:"$2" --conns "$CONNS" --secs "$SECS" \
      --size "$SIZE" --window "$WINDOW")
    rate+=("$(awk '/messages_per_sec/ {print $2}' <<<"$out")")
    p50+=("$(awk '/p50_us/ {print $2}' <<<"$out")")
    p99+=("$(awk '/p99_us/ {print $2}' <<<"$out")")
  done
  result[$1/rate]=$(median 0 "${rate[@]}")
  result[$1/p50]=$(median 0 "${p50[@]}")
  result[$1/p99]=$(median 0 "${p99[@]}")
}
measure direct $ECHO
measure rama $RAMA
measure nginx $NGINX
measure haproxy $HAPROXY

# Memory of idle sessions: the resident set of each proxy process (nginx: its one worker)
# before and after HOLD sessions were opened through it and proved by one echo each.
HOLD=${HOLD:-1000}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
idle_cost() { # name port pid
  local before after
  before=$(rss_kib "$3")
  coproc LOAD { "$TARGET"/ws-load --target 127.0.0.1:"$2" --hold "$HOLD"; }
  read -r line <&"${LOAD[0]}"
  [ "$line" = ready ] || { echo "$1: ws-load --hold failed" >&2; exit 1; }
  after=$(rss_kib "$3")
  exec {LOAD[1]}>&-
  wait "$LOAD_PID" 2>/dev/null || true
  result[$1/idle]=$(python3 -c "print('%.1f' % (($after - $before) / $HOLD))")
  result[$1/rss]=$(python3 -c "print('%.1f' % ($after / 1024))")
}
idle_cost rama $RAMA "${pids[1]}"
idle_cost nginx $NGINX "$(pgrep -P "${pids[2]}" | head -1)"
idle_cost haproxy $HAPROXY "${pids[3]}"

ratio() { python3 -c "print('%.2f' % ($1/$2))"; }
echo "WebSocket echo round trips, median of $RUNS x ${SECS}s runs on 127.0.0.1 ($(nproc) cores), $(date -u +%F)"
echo "ws-load: $CONNS connections, $WINDOW messages of $SIZE bytes in flight each; ws_echo origin, one thread everywhere"
echo
echo "| path | messages/s | p50 us | p99 us | / direct |"
echo "|---|---|---|---|---|"
for path in direct rama nginx haproxy; do
  echo "| $path | ${result[$path/rate]} | ${result[$path/p50]} | ${result[$path/p99]} | $(ratio "${result[$path/rate]}" "${result[direct/rate]}") |"
done
echo
echo "rama / nginx: $(ratio "${result[rama/rate]}" "${result[nginx/rate]}"), rama / haproxy: $(ratio "${result[rama/rate]}" "${result[haproxy/rate]}")"
echo
echo "$HOLD idle sessions (each proved by one echo), resident set of the proxy process"
echo
echo "| proxy | KiB per idle session | RSS with them, MiB |"
echo "|---|---|---|"
for path in rama nginx haproxy; do
  echo "| $path | ${result[$path/idle]} | ${result[$path/rss]} |"
done
