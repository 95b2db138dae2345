#!/usr/bin/env bash
# TLS termination: nginx (stream, L4), haproxy (mode tcp) and rama's tls_reverse_proxy, each
# terminating TLS in front of the same local plain-HTTP origin (nginx), side by side in one run
# on 127.0.0.1. wrk drives them: full handshakes per second (`Connection: close`, a new TLS
# connection per request) and keep-alive requests per second over a 64 KiB body.
# Installs nginx, its stream module, haproxy and wrk with apt.
#
#   bench/tls.sh               # 5 runs of 5 s each, medians
#   RUNS=3 SECS=3 bench/tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
SECS=${SECS:-5}
ORIGIN=26000
NGINX=26001
HAPROXY=26002
RAMA=26003

need=()
command -v nginx >/dev/null || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --example tls_reverse_proxy -q

work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# One ECDSA P-256 certificate for every terminator, so they do the same handshake work.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/both.pem"
head -c 65536 /dev/urandom > "$work/64k"
echo ok > "$work/small"

mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<CFG
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes $(nproc);
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  server { listen 127.0.0.1:$ORIGIN; root $work; keepalive_requests 1000000; }
}
stream {
  server {
    listen 127.0.0.1:$NGINX ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    proxy_pass 127.0.0.1:$ORIGIN;
  }
}
CFG
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
cat > "$work/haproxy.cfg" <<CFG
global
  maxconn 4000
  nbthread $(nproc)
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen tls
  bind 127.0.0.1:$HAPROXY ssl crt $work/both.pem
  server origin 127.0.0.1:$ORIGIN
CFG
haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!)
RUST_LOG=warn target/release/examples/tls_reverse_proxy --listen 127.0.0.1:$RAMA \
  --upstream 127.0.0.1:$ORIGIN --cert "$work/cert.pem" --key "$work/key.pem" >/dev/null & pids+=($!)
wait_port $ORIGIN; wait_port $NGINX; wait_port $HAPROXY; wait_port $RAMA

# Requests per second of one wrk run against port $1, path $2, extra wrk flags after.
rps() {
  wrk -t 2 -c 32 -d "${SECS}s" "${@:3}" "https://127.0.0.1:$1/$2" 2>/dev/null |
    awk '/Requests\/sec/ {print $2}'
}
median() { python3 -c 'import sys,statistics; print("%.0f" % statistics.median(map(float, sys.argv[1:])))' "$@"; }

declare -A result
for path in nginx haproxy rama; do
  case $path in nginx) port=$NGINX;; haproxy) port=$HAPROXY;; rama) port=$RAMA;; esac
  hs=(); ka=()
  for _ in $(seq "$RUNS"); do
    hs+=("$(rps "$port" small -H 'Connection: close')")
    ka+=("$(rps "$port" 64k)")
  done
  result[$path/hs]=$(median "${hs[@]}")
  result[$path/ka]=$(median "${ka[@]}")
done

echo "TLS termination, requests/s, median of $RUNS x ${SECS}s wrk runs (2 threads, 32 connections) on 127.0.0.1 ($(nproc) cores), $(date -u +%F)"
echo
echo "| workload | nginx (stream) | haproxy (tcp) | rama tls_reverse_proxy | rama / nginx | rama / haproxy |"
echo "|---|---|---|---|---|---|"
for w in "hs:full handshakes/s (Connection: close)" "ka:keep-alive, 64 KiB responses"; do
  k=${w%%:*}; name=${w#*:}
  n=${result[nginx/$k]}; h=${result[haproxy/$k]}; r=${result[rama/$k]}
  printf '| %s | %s | %s | %s | %.2f | %.2f |\n' "$name" "$n" "$h" "$r" \
    "$(python3 -c "print($r/$n)")" "$(python3 -c "print($r/$h)")"
done
