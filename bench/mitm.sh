#!/usr/bin/env bash
# TLS interception: rama's mitm_proxy against mitmproxy's mitmdump, side by side in one run on
# 127.0.0.1, in front of the same local HTTPS origin (nginx, HTTP/1.1 and h2, an ECDSA P-256
# certificate of a throwaway CA that both proxies are told to trust for the upstream).
#
# Both proxies do the same work per request: terminate the client's TLS with a certificate of
# their own CA, add one request header (`x-rama-mitm: 1`; mitmdump through a one-line addon),
# verify and reuse a pooled TLS connection to the origin, and stream the answer back. Neither
# logs requests (rama at RUST_LOG=warn, mitmdump -q). mitmdump runs with
# `connection_strategy=lazy`, as rama works: the `CONNECT` is answered at once and the
# upstream dialed when the first request arrives.
#
# The load client (tests/bin/mitm_load.rs, one thread) measures, for each proxy:
#   - requests/s: 32 connections, each one CONNECT tunnel, TLS with the proxy, then keep-alive
#     HTTP/1.1 `GET /` (a 3-byte answer) for SECS seconds;
#   - new hosts/s: 32 connections, each repeatedly a CONNECT to a name never seen before
#     (`hN.<run>.test`), a TLS handshake verifying the minted certificate for that name, close:
#     the cost of minting (no upstream is dialed: both proxies are lazy);
#   - memory: the proxy's peak RSS (VmHWM) over the whole run, and RSS at the end.
# rama runs on one thread (mitmdump's event loop is one thread too), and, in a second column,
# on every core.
#
#   bench/mitm.sh               # 3 runs of 5 s each, medians
#   RUNS=5 SECS=10 bench/mitm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

RUNS=${RUNS:-3}
SECS=${SECS:-5}
CONNS=${CONNS:-32}
ORIGIN=27000
RAMA=27001
RAMA_ALL=27002
MITMDUMP=27003
TARGET_DIR=${CARGO_TARGET_DIR:-target}
VENV=${MITM_VENV:-$TARGET_DIR/mitmproxy-venv}

want nginx
want openssl
install_missing
if [ ! -x "$VENV/bin/mitmdump" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q mitmproxy
fi
cargo build --release -q -p rama-examples --example mitm_proxy
cargo build --release -q -p rama-e2e --bin mitm-load
BIN=$TARGET_DIR/release/examples/mitm_proxy
LOAD=$TARGET_DIR/release/mitm-load

start_work

# The origin's CA and certificate (localhost, 127.0.0.1).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=bench origin CA" -keyout "$work/origin-ca.key" -out "$work/origin-ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$work/origin.key" -out "$work/origin.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$work/san.ext"
openssl x509 -req -in "$work/origin.csr" -CA "$work/origin-ca.pem" -CAkey "$work/origin-ca.key" \
  -CAcreateserial -days 2 -extfile "$work/san.ext" -out "$work/origin.pem" 2>/dev/null

mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<CFG
$(nginx_main nginx 1)
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$ORIGIN ssl http2;
    ssl_certificate $work/origin.pem;
    ssl_certificate_key $work/origin.key;
    location / { return 200 "ok\n"; }
  }
}
CFG
nginx -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)

RUST_LOG=warn "$BIN" --listen 127.0.0.1:$RAMA --threads 1 --ca-dir "$work/rama-ca" \
  --upstream-ca "$work/origin-ca.pem" > /dev/null &
RAMA_PID=$!
pids+=($RAMA_PID)
RUST_LOG=warn "$BIN" --listen 127.0.0.1:$RAMA_ALL --threads 0 --ca-dir "$work/rama-ca-all" \
  --upstream-ca "$work/origin-ca.pem" > /dev/null &
RAMA_ALL_PID=$!
pids+=($RAMA_ALL_PID)

cat > "$work/mark.py" <<'PY'
def request(flow):
    flow.request.headers["x-rama-mitm"] = "1"
PY
"$VENV/bin/mitmdump" -q --listen-host 127.0.0.1 --listen-port $MITMDUMP \
  --set confdir="$work/mitm-conf" --set connection_strategy=lazy \
  --set ssl_verify_upstream_trusted_ca="$work/origin-ca.pem" -s "$work/mark.py" &
MITM_PID=$!
pids+=($MITM_PID)

for port in $ORIGIN $RAMA $RAMA_ALL $MITMDUMP; do wait_port $port; done
same_autogroup $ORIGIN $RAMA $RAMA_ALL $MITMDUMP
declare -A CA=(
  [rama]=$work/rama-ca/ca.pem
  [rama-all]=$work/rama-ca-all/ca.pem
  [mitmdump]=$work/mitm-conf/mitmproxy-ca-cert.pem
)
declare -A PORT=([rama]=$RAMA [rama-all]=$RAMA_ALL [mitmdump]=$MITMDUMP)
declare -A PID=([rama]=$RAMA_PID [rama-all]=$RAMA_ALL_PID [mitmdump]=$MITM_PID)
names=(rama rama-all mitmdump)

# Every proxy must intercept (its own CA, the origin sees the header) before timing.
for name in "${names[@]}"; do
  seen=$(curl -sS --max-time 20 -x "http://127.0.0.1:${PORT[$name]}" --cacert "${CA[$name]}" \
    -w ' %{http_code}' "https://localhost:$ORIGIN/")
  [ "$seen" = "ok
 200" ] || { echo "$name does not intercept: $seen" >&2; exit 1; }
done

field() { tr ' ' '\n' | sed -n "/^$1\$/{n;p}"; }
kib() { awk "/$2/ {print \$2}" "/proc/$1/status"; }

declare -A result
for name in "${names[@]}"; do
  rps=() hosts=()
  for run in $(seq "$RUNS"); do
    out=$("$LOAD" requests --proxy "127.0.0.1:${PORT[$name]}" --ca "${CA[$name]}" \
      --target "localhost:$ORIGIN" --conns "$CONNS" --secs "$SECS")
    rps+=("$(field rps <<< "$out")")
    out=$("$LOAD" hosts --proxy "127.0.0.1:${PORT[$name]}" --ca "${CA[$name]}" \
      --port "$ORIGIN" --prefix "$name-$run" --conns "$CONNS" --secs "$SECS")
    hosts+=("$(field per_sec <<< "$out")")
    echo "$name run $run: requests/s ${rps[-1]}, new hosts/s ${hosts[-1]}" >&2
  done
  result[$name/rps]=$(median 0 "${rps[@]}")
  result[$name/hosts]=$(median 0 "${hosts[@]}")
  result[$name/peak]=$(( $(kib "${PID[$name]}" VmHWM) / 1024 ))
  result[$name/rss]=$(( $(kib "${PID[$name]}" VmRSS) / 1024 ))
done

echo
echo "TLS interception, median of $RUNS x ${SECS}s runs, $CONNS connections, on 127.0.0.1 ($(nproc) cores), $(date -u +%F); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| | rama (1 thread) | rama ($(nproc) threads) | mitmdump $("$VENV/bin/mitmdump" --version | sed -n 's/^Mitmproxy: //p') | rama 1 thread / mitmdump |"
echo "|---|---|---|---|---|"
ratio() { python3 -c "print('%.1fx' % ($1 / max($2, 1)))"; }
printf '| requests/s (keep-alive, h1) | %s | %s | %s | %s |\n' "${result[rama/rps]}" \
  "${result[rama-all/rps]}" "${result[mitmdump/rps]}" "$(ratio "${result[rama/rps]}" "${result[mitmdump/rps]}")"
printf '| new hosts/s (mint + handshake) | %s | %s | %s | %s |\n' "${result[rama/hosts]}" \
  "${result[rama-all/hosts]}" "${result[mitmdump/hosts]}" "$(ratio "${result[rama/hosts]}" "${result[mitmdump/hosts]}")"
printf '| peak RSS (MiB) | %s | %s | %s | %s |\n' "${result[rama/peak]}" \
  "${result[rama-all/peak]}" "${result[mitmdump/peak]}" "$(ratio "${result[rama/peak]}" "${result[mitmdump/peak]}")"
printf '| RSS at the end (MiB) | %s | %s | %s | %s |\n' "${result[rama/rss]}" \
  "${result[rama-all/rss]}" "${result[mitmdump/rss]}" "$(ratio "${result[rama/rss]}" "${result[mitmdump/rss]}")"
