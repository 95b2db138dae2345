#!/usr/bin/env bash
# TCP relay throughput: iperf3 direct, through haproxy (mode tcp) and through rama's
# tcp_forward, side by side in one run on 127.0.0.1. Installs iperf3 and haproxy with apt.
#
#   bench/tcp.sh            # 5 runs of 5 s per path and direction, medians
#   RUNS=3 SECS=3 bench/tcp.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

RUNS=${RUNS:-5}
SECS=${SECS:-5}
IPERF_PORT=25201
HAPROXY_PORT=25301
RAMA_PORT=25401
RAMA_COPY_PORT=25402
RAMA_HAND_PORT=25403

want iperf3
want haproxy
install_missing
cargo build --release --example tcp_forward -q

start_work


iperf3 -s -p $IPERF_PORT >/dev/null 2>&1 & pids+=($!)
cat > "$work/haproxy.cfg" <<CFG
global
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option splice-auto
listen relay
  bind 127.0.0.1:$HAPROXY_PORT
  server upstream 127.0.0.1:$IPERF_PORT
CFG
haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!)
RUST_LOG=warn target/release/examples/tcp_forward --listen 127.0.0.1:$RAMA_PORT \
  --upstream 127.0.0.1:$IPERF_PORT --relay splice >/dev/null & pids+=($!)
RUST_LOG=warn target/release/examples/tcp_forward --listen 127.0.0.1:$RAMA_COPY_PORT \
  --upstream 127.0.0.1:$IPERF_PORT --relay copy >/dev/null & pids+=($!)
# The same stack built by hand instead of by proxy! (issue 3: the macro costs nothing).
RUST_LOG=warn target/release/examples/tcp_forward --listen 127.0.0.1:$RAMA_HAND_PORT \
  --upstream 127.0.0.1:$IPERF_PORT --relay splice --hand-built >/dev/null & pids+=($!)
wait_port $IPERF_PORT; wait_port $HAPROXY_PORT; wait_port $RAMA_PORT; wait_port $RAMA_COPY_PORT
wait_port $RAMA_HAND_PORT
same_autogroup $IPERF_PORT $HAPROXY_PORT $RAMA_PORT $RAMA_COPY_PORT $RAMA_HAND_PORT

# Gbit/s of one iperf3 run (receiver side).
gbps() {
  iperf3 -c 127.0.0.1 -p "$1" -t "$SECS" -J "${@:2}" |
    python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}

declare -A result
for dir in "upload:" "download:-R" "4 streams:-P 4"; do
  name=${dir%%:*}; flags=${dir#*:}
  for path in direct haproxy rama rama-copy rama-hand; do
    case $path in
      direct) port=$IPERF_PORT;; haproxy) port=$HAPROXY_PORT;;
      rama) port=$RAMA_PORT;; rama-copy) port=$RAMA_COPY_PORT;; rama-hand) port=$RAMA_HAND_PORT;;
    esac
    runs=()
    # Interleave nothing: each path gets its runs back to back, all paths in the same minute.
    for _ in $(seq "$RUNS"); do runs+=("$(gbps $port $flags)"); done
    result["$name/$path"]=$(median 2 "${runs[@]}")
  done
done

echo "TCP throughput, Gbit/s, median of $RUNS x ${SECS}s iperf3 runs on 127.0.0.1 ($(nproc) cores), $(date -u +%F)"
echo
echo "| workload | direct | haproxy | rama (splice) | rama (copy) | rama / haproxy | rama / direct | splice / copy |"
echo "|---|---|---|---|---|---|---|---|"
for name in "upload" "download" "4 streams"; do
  d=${result["$name/direct"]}; h=${result["$name/haproxy"]}
  r=${result["$name/rama"]}; c=${result["$name/rama-copy"]}
  printf '| %s | %s | %s | %s | %s | %.2f | %.2f | %.2f |\n' "$name" "$d" "$h" "$r" "$c" \
    "$(python3 -c "print($r/$h)")" "$(python3 -c "print($r/$d)")" "$(python3 -c "print($r/$c)")"
done

echo
echo "proxy!-built against hand-built tcp_forward (same run, splice), Gbit/s"
echo
echo "| workload | proxy! | by hand | proxy! / by hand |"
echo "|---|---|---|---|"
for name in "upload" "download" "4 streams"; do
  r=${result["$name/rama"]}; m=${result["$name/rama-hand"]}
  printf '| %s | %s | %s | %.2f |\n' "$name" "$r" "$m" "$(python3 -c "print($r/$m)")"
done
