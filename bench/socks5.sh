#!/usr/bin/env bash
# SOCKS5: rama's socks5_proxy, dante (danted) and microsocks side by side in one run on
# 127.0.0.1, against one local origin: one long transfer (Gbit/s), many short CONNECT + small
# GET exchanges (per second, p50/p99 latency), and resident memory with idle open tunnels.
# Installs dante-server and microsocks with apt. Every load is bounded in count and time.
#
#   bench/socks5.sh                       # 3 runs each, medians
#   RUNS=1 COUNT=5000 IDLE=1000 bench/socks5.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

RUNS=${RUNS:-3}
COUNT=${COUNT:-20000}    # short exchanges per run (bounded by SECS too)
SECS=${SECS:-10}
CONNS=${CONNS:-64}       # concurrent clients for the short exchanges
BYTES=${BYTES:-4294967296}  # the long transfer: 4 GiB
IDLE=${IDLE:-5000}       # idle tunnels for the memory figure (2 fds each in the proxy)
SMALL=25501; BULK=25502; HOLD=25503
RAMA=25510; DANTE=25511; MICRO=25512

want danted dante-server
want microsocks
install_missing
cargo build --release -q --example socks5_proxy -p rama-examples
cargo build --release -q --bin socks5-load -p rama-e2e
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
load=$target_dir/release/socks5-load
rama=$target_dir/release/examples/socks5_proxy

cleanup_more() { pkill -F "$work/danted.pid" 2>/dev/null || true; }
start_work
ulimit -n 20000


"$load" origin --small 127.0.0.1:$SMALL --bulk 127.0.0.1:$BULK --hold 127.0.0.1:$HOLD >/dev/null & pids+=($!)
# (The port probes below count as clients that hang up mid-handshake; rama logs them.)
RUST_LOG=warn "$rama" --listen 127.0.0.1:$RAMA >/dev/null 2>"$work/rama.log" & pids+=($!)
rama_pid=$!
cat > "$work/danted.conf" <<CFG
logoutput: /dev/null
internal: 127.0.0.1 port = $DANTE
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }
CFG
danted -f "$work/danted.conf" -p "$work/danted.pid" -N 2 >/dev/null 2>&1 & pids+=($!)
microsocks -i 127.0.0.1 -p $MICRO >/dev/null 2>&1 & pids+=($!)
micro_pid=$!
for port in $SMALL $BULK $HOLD $RAMA $DANTE $MICRO; do wait_port $port; done
same_autogroup $SMALL $BULK $HOLD $RAMA $DANTE $MICRO

field() { tr ' ' '\n' | sed -n "s/^$1=//p"; }
# Resident memory (MiB) of a process tree's root and its children.
rss_mib() {
  local total=0 pid
  for pid in "$@"; do
    kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${kb:-0}))
  done
  python3 -c "print('%.1f' % ($total/1024))"
}
# danted forks helper processes (negotiate, request, io children): count them all.
descendants() { local pid; for pid in "$@"; do echo "$pid"; descendants $(pgrep -P "$pid" || true); done; }
dante_pids() { descendants "$(cat "$work/danted.pid")" | tr '\n' ' '; }

declare -A result
for name in direct rama dante microsocks; do
  case $name in
    direct) port=$BULK;; rama) port=$RAMA;; dante) port=$DANTE;; microsocks) port=$MICRO;;
  esac
  g=(); r=(); p50=(); p99=()
  for _ in $(seq "$RUNS"); do
    if [ $name = direct ]; then
      g+=("$("$load" bulk --proxy 127.0.0.1:$BULK --target 127.0.0.1:$BULK --bytes "$BYTES" | field gbps)")
      continue
    fi
    g+=("$("$load" bulk --proxy 127.0.0.1:$port --target 127.0.0.1:$BULK --bytes "$BYTES" | field gbps)")
    out=$("$load" rate --proxy 127.0.0.1:$port --target 127.0.0.1:$SMALL --conns "$CONNS" --count "$COUNT" --secs "$SECS")
    r+=("$(echo "$out" | field per_sec)"); p50+=("$(echo "$out" | field p50_ms)"); p99+=("$(echo "$out" | field p99_ms)")
    failed=$(echo "$out" | field failed)
    [ "$failed" = 0 ] || echo "warning: $name: $failed failed exchanges" >&2
  done
  result[$name/gbps]=$(median 2 "${g[@]}")
  if [ $name != direct ]; then
    result[$name/rate]=$(median 2 "${r[@]}"); result[$name/p50]=$(median 2 "${p50[@]}"); result[$name/p99]=$(median 2 "${p99[@]}")
  fi
done

# Memory with idle tunnels: open them, measure, close them.
for name in rama dante microsocks; do
  case $name in rama) port=$RAMA;; dante) port=$DANTE;; microsocks) port=$MICRO;; esac
  case $name in rama) procs=$rama_pid;; dante) procs=$(dante_pids);; microsocks) procs=$micro_pid;; esac
  result[$name/idle0]=$(rss_mib $procs)
  coproc IDLER { "$load" idle --proxy 127.0.0.1:$port --target 127.0.0.1:$HOLD --tunnels "$IDLE"; }
  if read -r -t 120 line <&"${IDLER[0]}" && [ "$line" = ready ]; then
    sleep 1
    case $name in dante) procs=$(dante_pids);; esac
    result[$name/idle]=$(rss_mib $procs)
  else
    result[$name/idle]="n/a"
  fi
  exec {IDLER[1]}>&-
  wait "$IDLER_PID" 2>/dev/null || true
  sleep 1
done

echo "SOCKS5 on 127.0.0.1 ($(nproc) cores), $(date -u +%F); medians of $RUNS runs"
echo "(long transfer: one ${BYTES}-byte download; short exchanges: CONNECT + GET of 13 bytes, $CONNS clients, up to $COUNT exchanges or ${SECS}s)"
echo
echo "| proxy | long transfer, Gbit/s | short exchanges/s | p50 ms | p99 ms | RSS idle, MiB | RSS with $IDLE idle tunnels, MiB |"
echo "|---|---|---|---|---|---|---|"
echo "| direct (no proxy) | ${result[direct/gbps]} | | | | | |"
for name in rama dante microsocks; do
  echo "| $name | ${result[$name/gbps]} | ${result[$name/rate]} | ${result[$name/p50]} | ${result[$name/p99]} | ${result[$name/idle0]} | ${result[$name/idle]} |"
done
