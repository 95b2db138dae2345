# What the bench scripts share; sourced by each (`. bench/lib.sh` after `cd` to the repo root),
# never run on its own.

# `want COMMAND [PACKAGE]` notes PACKAGE (default: COMMAND) as missing unless COMMAND is on the
# PATH; `install_missing` installs every noted package with apt.
missing=()
want() { command -v "$1" >/dev/null || missing+=("${2:-$1}"); }
install_missing() {
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# `start_work` makes the scratch directory $work and, on exit, kills the processes in $pids,
# runs `cleanup_more` if the script defines it, and removes $work.
start_work() {
  work=$(mktemp -d)
  pids=()
  trap cleanup EXIT
}
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  if declare -F cleanup_more >/dev/null; then cleanup_more; fi
  rm -rf "$work"
}

# `wait_port PORT` waits (20 s at most) until something accepts on 127.0.0.1:PORT.
wait_port() {
  for _ in $(seq 400); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 never opened" >&2
  exit 1
}

# `same_autogroup PORT...` stops the bench when a process listening on one of the ports runs
# in another scheduler autogroup than the bench. With `kernel.sched_autogroup_enabled`
# (Debian's default) each session shares the CPU as one: a server that daemonizes (`setsid`)
# gets as much CPU as the load generator and every other process together, which skews every
# figure of the run (an origin nginx left to daemonize made rama and haproxy alike up to 1.5x
# slower per request, and bimodal). Idle helpers of their own session (squid's `pinger`) do
# not listen and are not counted.
same_autogroup() {
  local mine port p
  [ -r /proc/$$/autogroup ] || return 0
  mine=$(cut -d' ' -f1 /proc/$$/autogroup)
  for port in "$@"; do
    for p in $(ss -ltnpH "sport = :$port" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
      [ "$(cut -d' ' -f1 "/proc/$p/autogroup" 2>/dev/null || echo "$mine")" = "$mine" ] && continue
      echo "$(cat "/proc/$p/comm") (pid $p, port $port) runs in another autogroup than the bench" >&2
      exit 1
    done
  done
}

# `median PLACES VALUE...` prints the median of the values with PLACES decimals.
median() {
  local places=$1
  shift
  python3 -c 'import sys,statistics; print("%.*f" % (int(sys.argv[1]), statistics.median(map(float, sys.argv[2:]))))' "$places" "$@"
}

# `nginx_main NAME WORKERS` prints the main context of an nginx config for a copy called NAME
# with WORKERS worker processes: its pid file and error log in $work, 4096 connections a worker.
nginx_main() {
  printf 'worker_processes %s;\npid %s;\nerror_log %s;\nevents { worker_connections 4096; }\n' \
    "$2" "$work/$1.pid" "$work/$1-error.log"
}

# `ticks "PID..."` prints the user + system clock ticks the processes spent so far, their
# threads and child processes (nginx's workers, squid's kids) included.
ticks() {
  local sum=0 f p
  for p in $1 $(for p in $1; do pgrep -P "$p"; done); do
    read -r -a f < "/proc/$p/stat" || continue
    sum=$((sum + f[13] + f[14]))
  done
  echo $sum
}

# `static_origin NAME PORT WORKERS` starts an nginx called NAME with WORKERS workers serving
# $work/www on 127.0.0.1:PORT (keep-alive without a request limit, no access log), in the
# foreground of the bench's session; its pid joins $pids.
static_origin() {
  mkdir -p "$work/$1-temp"
  cat > "$work/$1.conf" <<CFG
$(nginx_main "$1" "$3")
http {
  access_log off;
  client_body_temp_path $work/$1-temp;
  server { listen 127.0.0.1:$2; root $work/www; keepalive_requests 1000000; }
}
CFG
  nginx -c "$work/$1.conf" -g 'daemon off;' &
  pids+=($!)
}

# `nginx_reverse NAME WORKERS ORIGIN_PORT LISTEN...` writes $work/NAME.conf: nginx as a reverse
# proxy to the origin on 127.0.0.1:ORIGIN_PORT (keep-alive upstream connections), listening on
# each LISTEN (`ADDR:PORT`, or `ADDR:PORT http2` for h2c). Equal work: it adds to each forwarded
# request what rama's reverse proxy adds (`X-Forwarded-For`, `-Proto`, `-Host`, a `Forwarded`
# element, `Via`) and `Via` to each response; left bare, it would forward 5 fewer headers than
# rama, and the origin, which shares the two cores, would parse fewer behind it.
nginx_reverse() {
  local listen="" l
  for l in "${@:4}"; do listen+="    listen $l;"$'\n'; done
  mkdir -p "$work/$1-temp"
  cat > "$work/$1.conf" <<CFG
$(nginx_main "$1" "$2")
http {
  access_log off;
  client_body_temp_path $work/$1-temp;
  proxy_temp_path $work/$1-temp;
  upstream origin { server 127.0.0.1:$3; keepalive 64; }
  server {
$listen    keepalive_requests 1000000;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header Forwarded "for=\$remote_addr;host=\\"\$http_host\\";proto=\$scheme";
      proxy_set_header Via "1.1 nginx";
      add_header Via "1.1 nginx";
    }
  }
}
CFG
}
