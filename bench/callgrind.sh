#!/usr/bin/env bash
# Instructions and simulated cache misses per request (callgrind) for rama's reverse_proxy on
# one thread, or for nginx with one worker doing the same forwarding work as in bench/http.sh
# (`nginx_reverse`), in front of a local nginx origin serving 3 bytes, with h2load as the
# client. A warm-up goes first and is left out of the count. callgrind simulates the caches
# (32 KiB, 8-way L1s), so unlike the wall clock the figures compare across hosts and sessions:
# this is how bench/README.md's callgrind figures have been made since stop 9.
#
#   bench/callgrind.sh               # rama's reverse_proxy, HTTP/1.1, 64 connections
#   PROTO=h2c bench/callgrind.sh     # h2c (prior knowledge), 64 clients x 10 streams
#   PROXY=nginx bench/callgrind.sh   # nginx in rama's place (HTTP/1.1 or h2c alike)
#   BIN=DIR bench/callgrind.sh       # the reverse_proxy in DIR, e.g. the one bench/pgo.sh built
#   REQUESTS=20000 WARMUP=2000 OUT=target/callgrind.out   # the defaults
#
# callgrind's file stays at $OUT for `callgrind_annotate` (per function, per source line).
# Installs valgrind, nginx and h2load (nghttp2-client) with apt when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

PROXY=${PROXY:-rama}
PROTO=${PROTO:-h1}
REQUESTS=${REQUESTS:-20000}
WARMUP=${WARMUP:-2000}
OUT=$(realpath -m "${OUT:-target/callgrind.out}")
ORIGIN=27400
PORT=27401

case $PROTO in
  h1) load=(--h1 -c 64) ;;
  h2c) load=(-c 64 -m 10) ;;
  *) echo "PROTO is h1 or h2c" >&2; exit 2 ;;
esac
want valgrind
want nginx
want h2load nghttp2-client
install_missing
if [ "$PROXY" = rama ] && [ -z "${BIN:-}" ]; then
  cargo build --release --example reverse_proxy -q
fi
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/examples}
mkdir -p "$(dirname "$OUT")"

start_work
chmod 755 "$work"   # nginx's workers run as another user and serve from here
mkdir -p "$work/www"
echo ok > "$work/www/small"
static_origin origin $ORIGIN 1

# Collection starts switched off (`--instr-atstart=no`) and is switched on for the counted
# requests only, so start-up, warm-up and shutdown stay out.
callgrind=(valgrind --tool=callgrind --cache-sim=yes --instr-atstart=no --callgrind-out-file="$OUT")
case $PROXY in
  rama)
    RUST_LOG=warn "${callgrind[@]}" "$BIN/reverse_proxy" --listen 127.0.0.1:$PORT \
      --upstream http://127.0.0.1:$ORIGIN --threads 1 >/dev/null 2>"$work/valgrind.log" &
    ;;
  nginx)
    listen="127.0.0.1:$PORT"
    [ "$PROTO" = h2c ] && listen+=" http2"
    nginx_reverse proxy 1 $ORIGIN "$listen"
    # Without a master process the one worker is the process valgrind runs.
    "${callgrind[@]}" nginx -c "$work/proxy.conf" -g 'daemon off; master_process off;' \
      >/dev/null 2>"$work/valgrind.log" &
    ;;
  *) echo "PROXY is rama or nginx" >&2; exit 2 ;;
esac
vg=$!
pids+=($vg)
wait_port $ORIGIN
wait_port $PORT

run() {
  local out
  out=$(h2load "${load[@]}" -n "$1" "http://127.0.0.1:$PORT/small")
  grep -q "$1 succeeded, 0 failed" <<<"$out" ||
    { echo "h2load: not every request succeeded:" >&2; echo "$out" >&2; exit 1; }
}
run "$WARMUP"
callgrind_control -i on $vg >/dev/null 2>&1
run "$REQUESTS"
callgrind_control -i off $vg >/dev/null 2>&1
kill -INT $vg
wait $vg || true

echo "$PROXY, $PROTO, $REQUESTS requests after $WARMUP (callgrind, 1 thread), per request:"
callgrind_annotate "$OUT" 2>/dev/null | grep "PROGRAM TOTALS" | python3 -c '
import re, sys
n = int(sys.argv[1])
ir, dr, dw, i1, d1r, d1w = [int(v.replace(",", "")) for v in re.findall(r"([\d,]+) \(", sys.stdin.read())][:6]
print(f"instructions {ir / n:.0f}  L1i misses {i1 / n:.0f}  L1d read misses {d1r / n:.0f}  L1d write misses {d1w / n:.0f}")
' "$REQUESTS"
