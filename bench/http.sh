#!/usr/bin/env bash
# HTTP proxying: forward (absolute-form `GET http://origin/small` through rama's http_proxy,
# tinyproxy and squid) and reverse (rama's reverse_proxy, nginx `proxy_pass` and haproxy
# `mode http`), all in front of the same local nginx origin serving a small static file, side
# by side in one run on 127.0.0.1. wrk drives HTTP/1.1 keep-alive load (requests per second and
# p99 latency); h2load drives the reverse proxies over h2c (prior knowledge; requests per second
# and, from its per-request log, p99 latency). Each rama proxy runs twice: the plain release
# build, and a profile-guided one (`bench/pgo.sh`, trained on a load of its own; `PGO=0` leaves
# it out).
# Next to requests/s, the CPU time each proxy spent per request (user + system, from /proc,
# summed over its processes) is the steadier figure on a machine where the load generator, the
# origin and the proxy share two cores.
# Installs nginx, haproxy, tinyproxy, squid, wrk and h2load (nghttp2-client) with apt.
#
# The proxies take turns run by run (a burst of load from elsewhere lands on all of them, not
# on one proxy's every run), each round starting one step later than the one before; the table
# gives each one's median, the ratio table also in how many rounds rama did better than the peer
# (the runs of one round shared the machine's state), and every run's requests/s follow it.
#
#   bench/http.sh              # 7 runs of 5 s per proxy, medians
#   RUNS=3 SECS=4 bench/http.sh
#   ONLY=reverse bench/http.sh # only the reverse proxies (ONLY=forward: only the forward ones)
#   REV_ARGS="--trace --gzip" bench/http.sh   # extra flags for rama's reverse_proxy
#   RAMA_ARGS=--sched-batch bench/http.sh      # extra flags for both rama proxies
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

RUNS=${RUNS:-7}
SECS=${SECS:-5}
ONLY=${ONLY:-}
REV_ARGS=${REV_ARGS:-}
RAMA_ARGS=${RAMA_ARGS:-}
PGO=${PGO:-1}
BIN=${CARGO_TARGET_DIR:-target}/release/examples
ORIGIN=27000
RAMA_FWD=27001
TINYPROXY=27002
SQUID=27003
RAMA_FWD_PGO=27004
RAMA_REV=27011
NGINX_REV=27012
HAPROXY_REV=27013
RAMA_REV_PGO=27014
NGINX_H2=27022      # nginx and haproxy speak h2c (prior knowledge) on ports of their own;
HAPROXY_H2=27023    # rama's reverse_proxy tells h1 from the h2 preface on its one port

want nginx
want haproxy
want tinyproxy
want squid
want wrk
want h2load nghttp2-client
install_missing
cargo build --release --example http_proxy --example reverse_proxy -q
# The profile-guided build's examples; without it, its rows and ports are left out.
pgo_bin=
[ "$PGO" = 0 ] || pgo_bin=$(bench/pgo.sh | tail -n 1)

start_work
chmod 755 "$work"   # squid and tinyproxy drop to unprivileged users and write logs here

mkdir -p "$work/www" "$work/squid"
echo ok > "$work/www/small"

# The origin, and nginx-the-reverse-proxy in an nginx of its own (so that its CPU time is its
# own), each with one master and $(nproc) workers.
#
# Equal work: nginx and haproxy add to each forwarded request what rama's reverse proxy adds
# (`nginx_reverse` in lib.sh says what; haproxy's configuration below does the same).
static_origin nginx $ORIGIN "$(nproc)"
nginx_reverse nginx-rev "$(nproc)" $ORIGIN "127.0.0.1:$NGINX_REV" "127.0.0.1:$NGINX_H2 http2"
nginx -c "$work/nginx-rev.conf" -g 'daemon off;' & pids+=($!)
declare -A proc   # the process(es) of each path, whose CPU time is counted
proc[nginx]=$!
cat > "$work/haproxy.cfg" <<CFG
global
  maxconn 4000
  nbthread $(nproc)
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
listen reverse
  bind 127.0.0.1:$HAPROXY_REV
  bind 127.0.0.1:$HAPROXY_H2 proto h2
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request add-header Forwarded "for=%[src];host=\\"%[req.hdr(host)]\\";proto=http"
  http-request add-header Via "1.1 haproxy"
  http-response add-header Via "1.1 haproxy"
  server origin 127.0.0.1:$ORIGIN
CFG
haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!)
proc[haproxy]=$!
cat > "$work/tinyproxy.conf" <<CFG
User nobody
Group nogroup
Port $TINYPROXY
Listen 127.0.0.1
Timeout 60
MaxClients 1000
LogLevel Error
PidFile "$work/tinyproxy.pid"
Allow 127.0.0.1
CFG
tinyproxy -d -c "$work/tinyproxy.conf" >/dev/null 2>&1 & pids+=($!)
proc[tinyproxy]=$!
chown proxy "$work/squid"
cat > "$work/squid.conf" <<CFG
http_port 127.0.0.1:$SQUID
workers $(nproc)
pid_filename $work/squid/squid.pid
cache_log $work/squid/cache.log
access_log none
cache deny all
cache_mem 0 MB
coredump_dir $work/squid
via on
http_access allow localhost
http_access deny all
CFG
squid -N -f "$work/squid.conf" >/dev/null 2>&1 & pids+=($!)
proc[squid]=$!
# `start_rama PATH DIR EXAMPLE PORT FLAGS...` runs DIR/EXAMPLE as path PATH on PORT. rama warns
# on stderr when wrk closes a connection mid-request at the end of a run; keep it aside.
start_rama() {
  # RAMA_ARGS is a list of flags, split into words on purpose (as REV_ARGS where it is passed).
  RUST_LOG=warn "$2/$3" --listen 127.0.0.1:$4 $RAMA_ARGS "${@:5}" >/dev/null 2>"$work/$1.log" &
  pids+=($!)
  proc[$1]=$!
}
# The paths of each kind, as PATH:PORT.
fwd_paths="rama-fwd:$RAMA_FWD"
rev_paths="rama-rev:$RAMA_REV"
start_rama rama-fwd "$BIN" http_proxy $RAMA_FWD
start_rama rama-rev "$BIN" reverse_proxy $RAMA_REV --upstream http://127.0.0.1:$ORIGIN $REV_ARGS
if [ -n "$pgo_bin" ]; then
  start_rama rama-fwd-pgo "$pgo_bin" http_proxy $RAMA_FWD_PGO
  start_rama rama-rev-pgo "$pgo_bin" reverse_proxy $RAMA_REV_PGO --upstream http://127.0.0.1:$ORIGIN $REV_ARGS
  fwd_paths+=" rama-fwd-pgo:$RAMA_FWD_PGO"
  rev_paths+=" rama-rev-pgo:$RAMA_REV_PGO"
fi
ports() { for p in $1; do echo "${p#*:}"; done; }
rama_fwd=$(ports "$fwd_paths")
rama_rev=$(ports "$rev_paths")
for p in $ORIGIN $rama_fwd $TINYPROXY $SQUID $rama_rev $NGINX_REV $HAPROXY_REV $NGINX_H2 \
  $HAPROXY_H2; do wait_port "$p"; done
same_autogroup $ORIGIN $rama_fwd $TINYPROXY $SQUID $rama_rev $NGINX_REV $HAPROXY_REV

# Every path must actually serve the file before it is timed.
for p in $rama_fwd $TINYPROXY $SQUID; do
  [ "$(curl -sf -m 5 -x http://127.0.0.1:$p http://127.0.0.1:$ORIGIN/small)" = ok ] ||
    { echo "forward proxy on $p does not serve the file" >&2; exit 1; }
done
for p in $rama_rev $NGINX_REV $HAPROXY_REV; do
  [ "$(curl -sf -m 5 http://127.0.0.1:$p/small)" = ok ] ||
    { echo "reverse proxy on $p does not serve the file" >&2; exit 1; }
done
for p in $rama_rev $NGINX_H2 $HAPROXY_H2; do
  [ "$(curl -sf -m 5 --http2-prior-knowledge http://127.0.0.1:$p/small)" = ok ] ||
    { echo "reverse proxy on $p does not serve the file over h2c" >&2; exit 1; }
done

# wrk talks to the proxy's address; this makes each request absolute-form, as a proxy client does.
cat > "$work/forward.lua" <<LUA
wrk.path = "http://127.0.0.1:$ORIGIN/small"
wrk.headers["Host"] = "127.0.0.1:$ORIGIN"
LUA

# "requests/s p99_ms requests" of one wrk run against port $1, extra wrk flags after.
# Non-2xx answers, connect/write errors or timeouts fail the run. Read errors do not: tinyproxy
# closes the client connection after every response, which wrk counts as a read error and
# answers by reconnecting, so its figure includes a TCP connect per request.
wrk_run() {
  wrk -t 2 -c 64 -d "${SECS}s" --timeout 5s --latency "${@:2}" "http://127.0.0.1:$1/small" 2>&1 |
    awk '/Requests\/sec/ {r=$2}
         / requests in / {n=$1}
         /^ +99%/ {v=$2; m=1; if (v ~ /us$/) m=0.001; else if (v ~ /ms$/) m=1; else if (v ~ /s$/) m=1000;
                   sub(/[a-z]+$/, "", v); p=v*m}
         /Non-2xx/ {bad=1}
         /Socket errors/ {gsub(",", ""); if ($4 + $8 + $10 > 0) bad=1}
         END {if (bad || r == "") print "FAIL FAIL 0"; else printf "%s %.2f %s\n", r, p, n}'
}
# "requests/s p99-ms requests" of one h2load run (h2c, prior knowledge) against port $1: 64
# clients, 10 streams each. h2load prints no percentiles; its per-request log (start,
# status, microseconds to the end of the response) gives the p99.
h2_run() {
  local stats p99 rps n
  rm -f "$work/h2load.log"
  stats=$(h2load -t 2 -c 64 -m 10 -D "$SECS" --log-file="$work/h2load.log" "http://127.0.0.1:$1/small" 2>&1 |
    awk '/^finished in/ {gsub(",", ""); r=$4} /^requests:/ {n=$8; if ($10 + $12 + $14 > 0) bad=1}
         END {if (bad || r == "") print "FAIL 0"; else print r, n}')
  read -r rps n <<<"$stats"
  # A failed run has no latency to speak of: FAIL for both, as `wrk_run` says.
  [ "$rps" = FAIL ] && { echo "FAIL FAIL 0"; return; }
  p99=$(sort -n -k3,3 "$work/h2load.log" |
    awk '{d[NR]=$3} END {i=int(NR*0.99); if (i < 1) i=1; printf "%.2f", d[i] / 1000}')
  echo "$rps $p99 $n"
}

# Microseconds of CPU per request: clock ticks $1 -> $2 over $3 requests.
cpu_per_request() {
  python3 -c 'import sys; t0, t1, n, hz = map(int, sys.argv[1:]); print("%.1f" % ((t1 - t0) * 1e6 / hz / max(n, 1)))' \
    "$1" "$2" "$3" "$(getconf CLK_TCK)"
}

declare -A result runs
# One wrk run of path $1 against port $2 (extra wrk flags after), added to that path's runs.
# The paths take turns run by run, so that a burst of load from elsewhere on the machine
# (other builds) lands on all of them instead of on one path's every run.
wrk_once() {
  local out before after
  before=$(ticks "${proc[$1]:-}")
  out=$(wrk_run "$2" "${@:3}")
  after=$(ticks "${proc[$1]:-}")
  read -r rps p99 n <<<"$out"
  [ "$rps" = FAIL ] && { echo "$1: wrk run failed" >&2; exit 1; }
  runs[$1/rps]+=" $rps"; runs[$1/p99]+=" $p99"
  runs[$1/cpu]+=" $(cpu_per_request "$before" "$after" "$n")"
}
h2_once() {
  local out before after
  before=$(ticks "${proc[$1]}")
  out=$(h2_run "$2")
  after=$(ticks "${proc[$1]}")
  read -r rps p99 n <<<"$out"
  runs[$1/h2]+=" $rps"; runs[$1/h2p99]+=" $p99"
  [ "$rps" = FAIL ] || runs[$1/h2cpu]+=" $(cpu_per_request "$before" "$after" "$n")"
}
# Each round's steps, one per line: "wrk PATH PORT [wrk flags]" or "h2 PATH PORT".
steps=("wrk direct $ORIGIN")
if [ "$ONLY" != reverse ]; then
  for path in $fwd_paths tinyproxy:$TINYPROXY squid:$SQUID; do
    steps+=("wrk ${path%%:*} ${path#*:} -s $work/forward.lua")
  done
fi
if [ "$ONLY" != forward ]; then
  for kind in wrk h2; do
    for path in $rev_paths nginx:$NGINX_REV haproxy:$HAPROXY_REV; do
      port=${path#*:}
      [ $kind = h2 ] && case ${path%%:*} in nginx) port=$NGINX_H2;; haproxy) port=$HAPROXY_H2;; esac
      steps+=("$kind ${path%%:*} $port")
    done
  done
fi
# Round r starts at step r: no path always runs first, or always right after another one.
for round in $(seq 0 $((RUNS - 1))); do
  for i in $(seq 0 $((${#steps[@]} - 1))); do
    read -r -a step <<<"${steps[$(((round + i) % ${#steps[@]}))]}"
    case ${step[0]} in
      wrk) wrk_once "${step[@]:1}";;
      h2) h2_once "${step[@]:1}";;
    esac
  done
done
for key in "${!runs[@]}"; do
  case "${runs[$key]} " in
    *FAIL*) result[$key]=FAIL;;
    *) case $key in */p99|*/h2p99) places=2;; */cpu|*/h2cpu) places=1;; *) places=0;; esac
       result[$key]=$(median $places ${runs[$key]});;
  esac
done

ratio() { case "$1 $2" in *FAIL*|*-*) echo -;; *) python3 -c "print('%.2f' % ($1/$2))";; esac; }
# `ahead higher|lower "RUNS" "PEER_RUNS"`: in how many rounds the first did better than the
# peer ("5/7"). Both ran in every round, minutes apart at most, so this pairs the runs that
# shared the machine's state of the moment; the medians alone mix a quiet round of one with a
# busy round of the other.
ahead() {
  case "$2 $3" in *FAIL*) echo -; return;; esac
  python3 -c 'import sys
a, b = (list(map(float, x.split())) for x in sys.argv[2:])
won = sum((x > y) if sys.argv[1] == "higher" else (x < y) for x, y in zip(a, b))
print("%d/%d" % (won, len(a)))' "$1" "$2" "$3"
}
name() {
  case $1 in
    rama-fwd) echo "rama http_proxy";; rama-fwd-pgo) echo "rama http_proxy, PGO";;
    rama-rev) echo "rama reverse_proxy";; rama-rev-pgo) echo "rama reverse_proxy, PGO";;
    *) echo "$1";;
  esac
}
echo "HTTP proxying, median of $RUNS x ${SECS}s runs on 127.0.0.1 ($(nproc) cores), $(date -u "+%F, %H:%M UTC")"
echo "HTTP/1.1: wrk, 2 threads, 64 keep-alive connections, GET of a 3-byte file from a local nginx origin"
echo "(direct to the origin: ${result[direct/rps]} requests/s, p99 ${result[direct/p99]} ms)"
echo "(load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); rama flags: ${RAMA_ARGS:-none}, reverse_proxy: ${REV_ARGS:-none})"
echo "CPU: microseconds of user + system time the proxy spent per request (lower is better)"
# `compare RAMA PEERS...`: the rows of rama's two runs over each peer (with h2c columns when
# rama was run over h2c): the ratios of the medians, then the rounds rama won.
compare() {
  local rama=$1 peer h rounds
  shift
  for peer in "$@"; do
    for r in $rama $rama-pgo; do
      [ -n "${result[$r/rps]:-}" ] || continue
      h=; rounds=
      if [ -n "${result[$r/h2]:-}" ]; then
        h=" $(ratio "${result[$r/h2]}" "${result[$peer/h2]}") | $(ratio "${result[$r/h2p99]}" "${result[$peer/h2p99]}") |"
        rounds=" $(ahead higher "${runs[$r/h2]}" "${runs[$peer/h2]}") | $(ahead lower "${runs[$r/h2p99]}" "${runs[$peer/h2p99]}") |"
      fi
      printf '| %s / %s | %s | %s | %s |%s %s | %s |%s\n' "$(name "$r")" "$peer" \
        "$(ratio "${result[$r/rps]}" "${result[$peer/rps]}")" \
        "$(ratio "${result[$r/p99]}" "${result[$peer/p99]}")" \
        "$(ratio "${result[$r/cpu]}" "${result[$peer/cpu]}")" "$h" \
        "$(ahead higher "${runs[$r/rps]}" "${runs[$peer/rps]}")" \
        "$(ahead lower "${runs[$r/p99]}" "${runs[$peer/p99]}")" "$rounds"
    done
  done
}
# Every run's requests/s under the tables, to show the spread behind the medians.
every_run() {
  local path
  echo
  echo "Every run's requests/s, in the order run:"
  for path in rama-fwd rama-fwd-pgo tinyproxy squid rama-rev rama-rev-pgo nginx haproxy; do
    [ -n "${runs[$path/rps]:-}" ] || continue
    echo "  $(name "$path"): HTTP/1.1${runs[$path/rps]}${runs[$path/h2]:+; h2c${runs[$path/h2]}}"
  done
}
if [ "$ONLY" != reverse ]; then
echo
echo "Forward proxy (absolute-form GET)"
echo
echo "| proxy | requests/s | p99 ms | CPU µs/request |"
echo "|---|---|---|---|"
for path in rama-fwd rama-fwd-pgo tinyproxy squid; do
  [ -n "${result[$path/rps]:-}" ] || continue
  printf '| %s | %s | %s | %s |\n' "$(name $path)" "${result[$path/rps]}" "${result[$path/p99]}" "${result[$path/cpu]}"
done
echo
echo "| ratio | requests/s | p99 (lower is better) | CPU (lower is better) | rounds ahead: requests/s | rounds ahead: p99 |"
echo "|---|---|---|---|---|---|"
compare rama-fwd tinyproxy squid
fi
[ "$ONLY" = forward ] && { every_run; exit 0; }
echo
echo "Reverse proxy (HTTP/1.1 wrk; h2c: h2load, 64 clients x 10 streams, prior knowledge)"
echo
echo "| proxy | requests/s | p99 ms | CPU µs/request | h2c requests/s | h2c p99 ms | h2c CPU µs/request |"
echo "|---|---|---|---|---|---|---|"
for path in rama-rev rama-rev-pgo nginx haproxy; do
  [ -n "${result[$path/rps]:-}" ] || continue
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$(name $path)" "${result[$path/rps]}" "${result[$path/p99]}" \
    "${result[$path/cpu]}" "${result[$path/h2]}" "${result[$path/h2p99]}" "${result[$path/h2cpu]:--}"
done
echo
echo "| ratio | requests/s | p99 (lower is better) | CPU (lower is better) | h2c requests/s | h2c p99 (lower is better) | rounds ahead: requests/s | rounds ahead: p99 | rounds ahead: h2c | rounds ahead: h2c p99 |"
echo "|---|---|---|---|---|---|---|---|---|---|"
compare rama-rev nginx haproxy
every_run
