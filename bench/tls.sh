#!/usr/bin/env bash
# TLS termination: nginx (stream, L4), haproxy (mode tcp) and rama's tls_reverse_proxy, each
# terminating TLS in front of the same local plain-HTTP origin (nginx), side by side in one run
# on 127.0.0.1. wrk drives them: handshakes per second (`Connection: close`, a new TLS
# connection per request) and keep-alive requests per second over a 64 KiB body. Besides
# requests/s, each terminator's CPU time (user + system, from /proc) per request is reported:
# it holds steady when other work shares the cores, where requests/s does not.
#
# The three are set up alike: one ECDSA P-256 certificate, TLS 1.2 and 1.3 offered, each
# terminator on every core. Handshakes are measured twice:
#   - resumption on for all three: tickets and a session cache (nginx `ssl_session_tickets on;
#     ssl_session_cache shared`, haproxy's defaults, rama's defaults). wrk keeps each
#     connection's last session (SSL_clear keeps it) and offers it on the next connect, so
#     after its first handshake a wrk connection resumes: TLS 1.3 PSK with (EC)DHE, no
#     certificate and no signature;
#   - resumption off for all three (nginx tickets and cache off, haproxy `no-tls-tickets` and
#     `tune.ssl.cachesize 0`, rama `--no-resumption`): every connection pays the full
#     handshake, the pure cost of rustls + ring against OpenSSL.
# Before timing, every terminator is checked with a client that offers its previous session
# (Python's ssl, OpenSSL like wrk): it must resume when resumption is on and must not when it
# is off, and the negotiated version, cipher and key exchange are printed for each.
# Installs nginx, its stream module, haproxy and wrk with apt.
#
#   bench/tls.sh               # 5 runs of 5 s each, medians
#   RUNS=3 SECS=3 bench/tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

RUNS=${RUNS:-5}
SECS=${SECS:-5}
ORIGIN=26000
# Resumption on: nginx, haproxy, rama; off: the same plus 10.
NGINX=26001
HAPROXY=26002
RAMA=26003
NGINX_OFF=26011
HAPROXY_OFF=26012
RAMA_OFF=26013
BIN=${CARGO_TARGET_DIR:-target}/release/examples/tls_reverse_proxy

want nginx
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
want haproxy
want wrk
install_missing
cargo build --release --example tls_reverse_proxy -q

start_work

# One ECDSA P-256 certificate for every terminator, so they do the same handshake work.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/both.pem"
head -c 65536 /dev/urandom > "$work/64k"
echo ok > "$work/small"

# nginx stream server terminating TLS on port $1 with the resumption directives $2.
nginx_tls() {
  cat <<CFG
  server {
    listen 127.0.0.1:$1 ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    $2
    proxy_pass 127.0.0.1:$ORIGIN;
  }
CFG
}
# The origin and the terminating nginx are two processes, so that each terminator's own CPU
# time can be read apart from the origin's.
mkdir -p "$work/origin"
cat > "$work/origin.conf" <<CFG
$(nginx_main origin "$(nproc)")
http {
  access_log off;
  client_body_temp_path $work/origin;
  server { listen 127.0.0.1:$ORIGIN; root $work; keepalive_requests 1000000; }
}
CFG
nginx -c "$work/origin.conf" -g 'daemon off;' & pids+=($!)
cat > "$work/nginx.conf" <<CFG
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
$(nginx_main nginx "$(nproc)")
stream {
$(nginx_tls $NGINX "ssl_session_tickets on; ssl_session_cache shared:tls:10m;")
$(nginx_tls $NGINX_OFF "ssl_session_tickets off; ssl_session_cache off;")
}
CFG
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
nginx_pid=$!

# haproxy terminating TLS on port $1; $2 goes into `global` (the session cache is global, so
# the two setups are two processes), $3 onto the bind line.
haproxy_tls() {
  cat > "$work/haproxy-$1.cfg" <<CFG
global
  maxconn 4000
  nbthread $(nproc)
  ssl-default-bind-options ssl-min-ver TLSv1.2
  $2
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen tls
  bind 127.0.0.1:$1 ssl crt $work/both.pem $3
  server origin 127.0.0.1:$ORIGIN
CFG
  haproxy -f "$work/haproxy-$1.cfg" -db >/dev/null 2>&1 & pids+=($!)
  terminator[$1]=$!
}
# The process(es) terminating TLS on each port, whose CPU time is measured.
declare -A terminator
haproxy_tls $HAPROXY "" ""
haproxy_tls $HAPROXY_OFF "tune.ssl.cachesize 0" "no-tls-tickets"

rama_tls() {
  RUST_LOG=warn "$BIN" --listen 127.0.0.1:"$1" --upstream 127.0.0.1:$ORIGIN \
    --cert "$work/cert.pem" --key "$work/key.pem" "${@:2}" >/dev/null 2>"$work/rama-$1.log" &
  pids+=($!)
  terminator[$1]=$!
}
rama_tls $RAMA
rama_tls $RAMA_OFF --no-resumption
for port in $ORIGIN $NGINX $HAPROXY $RAMA $NGINX_OFF $HAPROXY_OFF $RAMA_OFF; do wait_port "$port"; done
same_autogroup $ORIGIN $NGINX $HAPROXY $RAMA $NGINX_OFF $HAPROXY_OFF $RAMA_OFF
# nginx's workers do the work (the master only forks them); both nginx setups share them.
terminator[$NGINX]=$(pgrep -P "$nginx_pid" | tr '\n' ' ')
terminator[$NGINX_OFF]=${terminator[$NGINX]}

# Connects to port $1 three times, each time offering the previous session, as wrk does, and
# prints the version, cipher and key exchange and whether the last connection resumed;
# exits non-zero unless that is $2 (True or False).
check() {
  local kx
  kx=$(openssl s_client -connect 127.0.0.1:"$1" </dev/null 2>/dev/null |
    awk -F': ' '/Server Temp Key/ {print $2; exit}')
  python3 - "$1" "$2" "$kx" <<'PY'
import socket, ssl, sys
port, want, kx = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
session = None
for _ in range(3):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
            tls.sendall(b"GET /small HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            # Reading to the end also reads the tickets the server sent after the handshake.
            while tls.recv(65536):
                pass
            session, reused = tls.session, tls.session_reused
            version, cipher = tls.version(), tls.cipher()[0]
print(f"  {port}: {version} {cipher} {kx}, resumed: {reused}")
if str(reused) != want:
    sys.exit(f"port {port}: resumed is {reused}, expected {want}")
PY
}
load=$(cut -d' ' -f1 /proc/loadavg)
echo "handshake setup (resumption on: $NGINX nginx, $HAPROXY haproxy, $RAMA rama; off: +10)"
for port in $NGINX $HAPROXY $RAMA; do check "$port" True; done
for port in $NGINX_OFF $HAPROXY_OFF $RAMA_OFF; do check "$port" False; done

# One wrk run against port $1, path $2, extra wrk flags after: "REQUESTS_PER_S CPU_US_PER_REQUEST",
# the second being the user + system time the terminator on that port spent per request.
run() {
  local before after out
  before=$(ticks "${terminator[$1]}")
  out=$(wrk -t 2 -c 32 -d "${SECS}s" "${@:3}" "https://127.0.0.1:$1/$2" 2>/dev/null)
  after=$(ticks "${terminator[$1]}")
  python3 - "$out" "$((after - before))" "$(getconf CLK_TCK)" <<'PY'
import re, sys
out, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
requests = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
print(f"{rps:.0f} {ticks * 1e6 / hz / requests:.0f}")
PY
}

# Samples per "path/workload" (requests/s) and "path/workload/cpu", space-separated. The three
# terminators take turns within each round, so that a noisy spell hits all of them.
declare -A samples
for _ in $(seq "$RUNS"); do
  for path in nginx haproxy rama; do
    case $path in
      nginx) on=$NGINX; off=$NGINX_OFF;;
      haproxy) on=$HAPROXY; off=$HAPROXY_OFF;;
      rama) on=$RAMA; off=$RAMA_OFF;;
    esac
    for k in hs full ka; do
      case $k in
        hs) read -r r c < <(run "$on" small -H 'Connection: close');;
        full) read -r r c < <(run "$off" small -H 'Connection: close');;
        ka) read -r r c < <(run "$on" 64k);;
      esac
      samples[$path/$k]+=" $r"
      samples[$path/$k/cpu]+=" $c"
    done
  done
done
declare -A result
for key in "${!samples[@]}"; do result[$key]=$(median 0 ${samples[$key]}); done

echo
echo "TLS termination, median of $RUNS x ${SECS}s wrk runs (2 threads, 32 connections) on 127.0.0.1 ($(nproc) cores, load average before: $load), $(date -u +%F)"
echo
echo "| workload | nginx (stream) | haproxy (tcp) | rama tls_reverse_proxy | rama / nginx | rama / haproxy |"
echo "|---|---|---|---|---|---|"
for w in "hs:new connection per request, resumption on for all (Connection: close)" \
  "full:new connection per request, resumption off for all: full handshakes" \
  "ka:keep-alive, 64 KiB responses"; do
  k=${w%%:*}; name=${w#*:}
  n=${result[nginx/$k]}; h=${result[haproxy/$k]}; r=${result[rama/$k]}
  printf '| %s, requests/s | %s | %s | %s | %.2f | %.2f |\n' "$name" "$n" "$h" "$r" \
    "$(python3 -c "print($r/$n)")" "$(python3 -c "print($r/$h)")"
  n=${result[nginx/$k/cpu]}; h=${result[haproxy/$k/cpu]}; r=${result[rama/$k/cpu]}
  printf '| %s, terminator CPU µs per request (lower is better) | %s | %s | %s | %.2f | %.2f |\n' \
    "$name" "$n" "$h" "$r" "$(python3 -c "print($r/$n)")" "$(python3 -c "print($r/$h)")"
done
