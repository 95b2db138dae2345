#!/usr/bin/env bash
# Profile-guided builds of the HTTP proxies the benchmarks time (`http_proxy`, `reverse_proxy`),
# for `bench/http.sh` to run beside the plain release build.
#
# 1. builds the examples instrumented (`-Cprofile-generate`),
# 2. runs them on 127.0.0.1 under a training load that is *not* the benchmark's: a 4 KiB file
#    (the benchmark's is 3 bytes), 16 connections (it uses 64), HTTP/1.1 through both proxies
#    and h2c through the reverse proxy, 4 s each,
# 3. merges the profile with the toolchain's `llvm-profdata` (rustup's `llvm-tools`, added when
#    missing) and builds the examples again with `-Cprofile-use`.
#
# The binaries land in $PGO_TARGET_DIR/<host triple>/release/examples (default target/pgo): the
# build names the host as its target, so that RUSTFLAGS reach only what runs in the proxy, not
# build scripts and proc macros (which would write profiles of rustc's runs into the training
# data). Installs nginx, wrk and h2load with apt when missing.
#
#   bench/pgo.sh                # prints the directory of the built examples on its last line
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

PGO_TARGET_DIR=${PGO_TARGET_DIR:-$PWD/target/pgo}
HOST=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
ORIGIN=27100
FWD=27101
REV=27102

want nginx
want wrk
want h2load nghttp2-client
install_missing
[ -x "$PROFDATA" ] || rustup component add llvm-tools >&2

start_work
chmod 755 "$work"   # nginx's workers run as another user and serve from here
mkdir -p "$work/www"
# A fixed place for the raw profiles, so that the instrumented build is built again only when
# the source changed (its flags name the place); emptied before each training.
profiles="$PGO_TARGET_DIR/profiles"
head -c 4096 /dev/zero | tr '\0' x > "$work/www/train"

build() {
  CARGO_TARGET_DIR="$PGO_TARGET_DIR" RUSTFLAGS="$1" \
    cargo build --release --target "$HOST" --example http_proxy --example reverse_proxy -q
}
build "-Cprofile-generate=$profiles"
rm -rf "$profiles"
bin="$PGO_TARGET_DIR/$HOST/release/examples"

static_origin origin $ORIGIN 1
# The instrumented proxies write their profiles when they exit, so they are stopped with the
# signal they shut down on (Ctrl-C) and waited for, not killed.
RUST_LOG=warn "$bin"/http_proxy --listen 127.0.0.1:$FWD >/dev/null 2>&1 & fwd=$!
RUST_LOG=warn "$bin"/reverse_proxy --listen 127.0.0.1:$REV --upstream http://127.0.0.1:$ORIGIN \
  >/dev/null 2>&1 & rev=$!
pids+=($fwd $rev)
for p in $ORIGIN $FWD $REV; do wait_port $p; done
[ "$(curl -sf -m 5 -x http://127.0.0.1:$FWD http://127.0.0.1:$ORIGIN/train)" = "$(cat "$work/www/train")" ] ||
  { echo "the instrumented http_proxy does not serve the training file" >&2; exit 1; }

cat > "$work/forward.lua" <<LUA
wrk.path = "http://127.0.0.1:$ORIGIN/train"
wrk.headers["Host"] = "127.0.0.1:$ORIGIN"
LUA
# A profile of error answers would train the wrong paths: any failed request stops the build.
train() {
  local out
  out=$("$@" 2>&1)
  echo "$out" | grep -E '^(Requests/sec|finished in|requests:)' >&2
  if echo "$out" | grep -qE 'Non-2xx|Socket errors|[1-9][0-9]* (failed|errored)'; then
    echo "training run failed: $*" >&2
    exit 1
  fi
}
train wrk -t 1 -c 16 -d 4s -s "$work/forward.lua" "http://127.0.0.1:$FWD/train"
train wrk -t 1 -c 16 -d 4s "http://127.0.0.1:$REV/train"
train h2load -t 1 -c 16 -m 4 -D 4 "http://127.0.0.1:$REV/train"
kill -INT $fwd $rev
wait $fwd $rev
ls "$profiles"/*.profraw >/dev/null

"$PROFDATA" merge -o "$work/merged.profdata" "$profiles"
build "-Cprofile-use=$work/merged.profdata"
echo "$bin"
