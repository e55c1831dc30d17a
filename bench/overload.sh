#!/usr/bin/env bash
# Origin protection under overload, on loopback: one origin emulator of fixed
# capacity (WORKERS x SERVICE_MS, default 4 x 20 ms = 200 req/s, unbounded
# queue), and in front of it in turn: Levee with origin_protection, nginx
# with the usual per-address limit_conn/limit_req, nginx with those plus a
# per-server limit_conn, and nothing (clients straight to the origin). Each
# front end gets an unloaded level (0.25x) and then 1x, 2x and 4x the origin's
# capacity, open loop, from 2032 source addresses plus a 10% verified class
# (127.0.12.0/24). One table at the end.
#
#   bench/overload.sh
#
# Environment: LEVEL_SECONDS (10, seconds per level, at most 60), LOADS
# ("0.25 1 2 4", multiples of capacity; the lowest below 1 is the unloaded
# reference), FRONTENDS ("levee nginx nginx-server direct"), WORKERS (4),
# SERVICE_MS (20), TIMEOUT (5, seconds per request), VERIFIED_SHARE (0.1),
# NGINX_SERVER_CONNS ("8"; several values run one nginx-server variant
# each), LEVEE_GOMAXPROCS (1), BENCH_KEEP=1 (keep the temp dir with configs
# and logs), BENCH_NO_BUILD=1 (use bench/out/levee and bench/out/overload as
# built before), LEVEE_COMMIT=REV (build Levee from that commit instead of
# the working tree), BENCH_OUT=DIR (where binaries go; default bench/out).
#
# Safety: every request goes to 127.0.0.1 from 127.x source addresses; the
# load tool refuses anything else; each level is bounded in time; everything
# started here is stopped on exit. See bench/README.md.
set -euo pipefail

LEVEL_SECONDS=${LEVEL_SECONDS:-10}
LOADS=${LOADS:-"0.25 1 2 4"}
FRONTENDS=${FRONTENDS:-"levee nginx nginx-server direct"}
WORKERS=${WORKERS:-4}
SERVICE_MS=${SERVICE_MS:-20}
TIMEOUT=${TIMEOUT:-5}
VERIFIED_SHARE=${VERIFIED_SHARE:-0.1}
NGINX_SERVER_CONNS=${NGINX_SERVER_CONNS:-8}
LEVEE_GOMAXPROCS=${LEVEE_GOMAXPROCS:-1}
SOURCES=127.0.1.1-127.0.8.254 # 2032 addresses: a many-source flood
VERIFIED=127.0.12.0/24         # the verified (known) class

posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "$1 must be a positive integer, got '$2'" >&2; exit 2; }; }
posint LEVEL_SECONDS "$LEVEL_SECONDS"
posint WORKERS "$WORKERS"
posint SERVICE_MS "$SERVICE_MS"
posint TIMEOUT "$TIMEOUT"
posint LEVEE_GOMAXPROCS "$LEVEE_GOMAXPROCS"
((LEVEL_SECONDS <= 60)) || { echo "LEVEL_SECONDS is capped at 60" >&2; exit 2; }
((TIMEOUT <= 60)) || { echo "TIMEOUT is capped at 60" >&2; exit 2; }
((WORKERS <= 1000 && SERVICE_MS <= 10000)) || { echo "WORKERS is capped at 1000, SERVICE_MS at 10000" >&2; exit 2; }
for n in $NGINX_SERVER_CONNS; do posint NGINX_SERVER_CONNS "$n"; done
for f in $FRONTENDS; do
	case $f in levee | nginx | nginx-server | direct) ;; *)
		echo "FRONTENDS: unknown front end '$f' (levee, nginx, nginx-server, direct)" >&2
		exit 2
		;;
	esac
done
CAPACITY=$(awk -v w="$WORKERS" -v s="$SERVICE_MS" 'BEGIN { printf "%g", w * 1000 / s }')
for l in $LOADS; do
	awk -v l="$l" -v c="$CAPACITY" 'BEGIN { exit !(l + 0 > 0 && l * c <= 10000) }' ||
		{ echo "LOADS: '$l' must be a number > 0 with load x capacity ($CAPACITY req/s) <= 10000 req/s" >&2; exit 2; }
done
awk -v v="$VERIFIED_SHARE" 'BEGIN { exit !(v + 0 >= 0 && v + 0 <= 1) }' || { echo "VERIFIED_SHARE must be within [0, 1]" >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BENCH_OUT=${BENCH_OUT:-$HERE/out}
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh" # log, die, free_port, start_bg, stop_pid, bench_cleanup

export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
TMP=$(mktemp -d /tmp/levee-overload.XXXXXX)
chmod 755 "$TMP" # nginx workers run as nobody when started by root
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- setup

ensure_nginx() {
	command -v nginx >/dev/null 2>&1 && return 0
	log "nginx is missing; installing it from Debian packages"
	local sudo=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 || die "need root or sudo to install nginx"
		sudo=(sudo)
	fi
	"${sudo[@]}" apt-get update
	local pkg=nginx
	apt-cache show nginx-light >/dev/null 2>&1 && pkg=nginx-light
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$pkg"
}

# build: the overload tool from the working tree; Levee from the working
# tree, or with LEVEE_COMMIT=REV from that commit (git archive into the temp
# dir: the shared working tree may hold other people's unfinished changes).
build() {
	mkdir -p "$BENCH_OUT"
	local src=$REPO rev dirty=""
	if [[ -n ${LEVEE_COMMIT:-} ]]; then
		rev=$(git -C "$REPO" rev-parse --short "$LEVEE_COMMIT^{commit}") || die "LEVEE_COMMIT=$LEVEE_COMMIT is not a commit"
		src=$TMP/src
		mkdir -p "$src"
		git -C "$REPO" archive "$rev" | tar -x -C "$src"
	else
		rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
		[[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]] && dirty=" + uncommitted changes"
	fi
	log "building levee ($rev$dirty) and overload into $BENCH_OUT"
	{ (cd "$src" && go build -o "$BENCH_OUT/levee" ./cmd/levee) && (cd "$REPO" && go build -o "$BENCH_OUT/overload" ./bench/cmd/overload); } ||
		die "build failed (another package may be mid-edit); retry, LEVEE_COMMIT=HEAD, or BENCH_NO_BUILD=1 to use the previous binaries"
	if [[ -n ${LEVEE_COMMIT:-} ]]; then
		echo "commit $rev, built $(date -u +%Y-%m-%dT%H:%MZ)" >"$BENCH_OUT/levee.rev"
	else
		echo "working tree at $rev$dirty, built $(date -u +%Y-%m-%dT%H:%MZ)" >"$BENCH_OUT/levee.rev"
	fi
}

needs_nginx=0
[[ " $FRONTENDS " == *" nginx"* ]] && needs_nginx=1
((needs_nginx)) && ensure_nginx
if [[ ${BENCH_NO_BUILD:-0} == 1 && -x $BENCH_OUT/levee && -x $BENCH_OUT/overload ]]; then
	log "BENCH_NO_BUILD=1: using the existing $BENCH_OUT/levee and overload"
else
	build
fi

# ---------------------------------------------------------------- configs

# write_levee DIR PORT ADMIN_PORT
write_levee() {
	local dir=$1
	mkdir -p "$dir/data"
	cat >"$dir/levee.yaml" <<EOF
listen:
  - address: 127.0.0.1:$2
sites:
  - name: origin
    upstreams: [{url: "http://127.0.0.1:$ORIGIN_PORT"}]
    origin_protection: {enabled: true}
admin:
  address: 127.0.0.1:$3
data_dir: $dir/data
# The verified class: allowlisted, so admitted first.
allow: [$VERIFIED]
# Request limits far above the test (each source sends well under 1 req/s,
# so the defaults, 50/s per address and 500/s per /24, would not bite
# either); the test is about the origin, not the rate limiter.
limits:
  - {name: bench-per-address, key: ip, rate: 1000000, burst: 1000000}
  - {name: bench-per-network, key: ip, v4_prefix: 24, rate: 1000000, burst: 1000000}
# A load test is an attack to the detector; record, do not mitigate.
detection: {disable_mitigation: true}
log: {level: info}
EOF
	"$BENCH_OUT/levee" config check "$dir/levee.yaml" >/dev/null || die "levee config $dir/levee.yaml does not validate"
}

# write_nginx DIR PORT SERVER_CONNS (0: no per-server limit)
write_nginx() {
	local dir=$1 port=$2 perserver=$3 nofile http_extra="" server_extra=""
	mkdir -p "$dir/tmp"
	nofile=$(ulimit -Hn)
	[[ $nofile == unlimited ]] && nofile=65536
	((nofile > 65536)) && nofile=65536
	if ((perserver > 0)); then
		http_extra="
    # Per server: at most $perserver requests in flight to the origin (of
    # $WORKERS workers), the verified class exempt.
    map \$verified \$server_key { 1 \"\"; default \$server_name; }
    limit_conn_zone \$server_key zone=perserver:1m;"
		server_extra="
        limit_conn perserver $perserver;"
	fi
	cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $nofile;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log error;
events { worker_connections $((nofile - 100)); }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;

    # The usual per-address limits; the verified range is exempt from
    # limit_req (an empty key is not counted), as nginx users exempt their
    # own networks and monitors.
    geo \$verified { default 0; $VERIFIED 1; }
    map \$verified \$limit_key { 1 ""; default \$binary_remote_addr; }
    limit_conn_zone \$binary_remote_addr zone=addr:10m;
    limit_req_zone \$limit_key zone=perip:10m rate=10r/s;$http_extra
    limit_conn_log_level warn; # below error_log's level: no log flood
    limit_req_log_level warn;

    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$port backlog=4096;
        server_name overload-bench;
        limit_conn addr 10;
        limit_req zone=perip burst=20 nodelay;$server_extra
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
    }
}
EOF
	nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" || die "nginx config $dir/nginx.conf does not validate"
}

# ---------------------------------------------------------------- runs

RESULTS=$TMP/results.txt
: >"$RESULTS"

start_origin() {
	free_port
	ORIGIN_PORT=$FREE_PORT
	free_port
	ORIGIN_ADMIN=$FREE_PORT
	start_bg origin "$ORIGIN_PORT" "$BENCH_OUT/overload" origin -listen "127.0.0.1:$ORIGIN_PORT" -admin "127.0.0.1:$ORIGIN_ADMIN" \
		-workers "$WORKERS" -service "${SERVICE_MS}ms" -lifetime 1h
	ORIGIN_PID=$STARTED_PID
	wait_listen "$ORIGIN_ADMIN" "$ORIGIN_PID" || die "origin admin did not start"
	log "origin emulator on 127.0.0.1:$ORIGIN_PORT: $WORKERS workers x ${SERVICE_MS} ms = $CAPACITY req/s (pid $ORIGIN_PID)"
}

# levee_admission: the learned limit and the shed count of the running Levee.
levee_admission() {
	local tok m
	tok=$(cat "$FE_DIR/data/admin.token" 2>/dev/null || true)
	m=$(curl -fsS --max-time 5 -H "Authorization: Bearer $tok" "http://127.0.0.1:$FE_ADMIN/metrics" 2>/dev/null) || { echo "(metrics unavailable)"; return 0; }
	grep -E '^levee_admission_(limit_requests|min_rtt_seconds|shed_total|admitted_total)' <<<"$m" |
		awk '$2 != 0 { sub(/levee_admission_/, ""); gsub(/,?upstream="[^"]*"/, ""); sub(/\{\}/, ""); printf "%s=%s ", $1, $2 }' || true
}

# start_frontend NAME [SERVER_CONNS]: sets FE_PORT, FE_PID, FE_LABEL.
start_frontend() {
	local name=$1 sc=${2:-0}
	FE_PID="" FE_DIR=$TMP/$name${2:+-$2}
	case $name in
	levee)
		free_port
		FE_PORT=$FREE_PORT
		free_port
		FE_ADMIN=$FREE_PORT
		write_levee "$FE_DIR" "$FE_PORT" "$FE_ADMIN"
		start_bg levee "$FE_PORT" env GOMAXPROCS="$LEVEE_GOMAXPROCS" "$BENCH_OUT/levee" serve -c "$FE_DIR/levee.yaml"
		FE_PID=$STARTED_PID
		FE_LABEL="Levee, origin_protection"
		;;
	nginx | nginx-server)
		free_port
		FE_PORT=$FREE_PORT
		write_nginx "$FE_DIR" "$FE_PORT" "$sc"
		start_bg "nginx${2:+-$2}" "$FE_PORT" nginx -p "$FE_DIR" -c "$FE_DIR/nginx.conf" -e "$FE_DIR/error.log"
		FE_PID=$STARTED_PID
		FE_LABEL="nginx, per-IP limits"
		((sc > 0)) && FE_LABEL="nginx, per-IP + per-server limit_conn $sc"
		;;
	direct)
		FE_PORT=$ORIGIN_PORT
		FE_LABEL="no proxy (origin direct)"
		;;
	esac
	local body
	# Drop what the previous front end left queued at the origin.
	curl -fsS --max-time 5 -X POST "http://127.0.0.1:$ORIGIN_ADMIN/flush" >/dev/null || die "origin admin does not answer"
	body=$(curl -fsS --max-time 5 "http://127.0.0.1:$FE_PORT/") || die "$FE_LABEL does not answer on 127.0.0.1:$FE_PORT"
	[[ $body == ok ]] || die "$FE_LABEL answered '$body', want 'ok'"
}

# run_levels: a 2 s warm-up at the lowest load (not measured: the front
# end's upstream connections and the first accepts), then every load level
# against the current front end.
run_levels() {
	local l rate out
	rate=$(awk -v c="$CAPACITY" -v ls="$LOADS" 'BEGIN { n = split(ls, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; printf "%g", m * c }')
	out=$("$BENCH_OUT/overload" load -target "http://127.0.0.1:$FE_PORT/" -rate "$rate" -duration 2s -timeout "${TIMEOUT}s" \
		-sources "$SOURCES" -verified "$VERIFIED" -verified-share "$VERIFIED_SHARE" -seed 99 -label warm-up) ||
		die "warm-up run failed: $out"
	for l in $LOADS; do
		rate=$(awk -v l="$l" -v c="$CAPACITY" 'BEGIN { printf "%g", l * c }')
		log "$FE_LABEL: ${l}x = $rate req/s for ${LEVEL_SECONDS}s"
		out=$("$BENCH_OUT/overload" load -target "http://127.0.0.1:$FE_PORT/" -rate "$rate" -duration "${LEVEL_SECONDS}s" \
			-timeout "${TIMEOUT}s" -sources "$SOURCES" -verified "$VERIFIED" -verified-share "$VERIFIED_SHARE" \
			-origin-admin "http://127.0.0.1:$ORIGIN_ADMIN/" -label "$FE_LABEL" -load "$l") ||
			die "load run failed: $out"
		grep '^RESULT ' <<<"$out" >>"$RESULTS"
		grep -v '^RESULT ' <<<"$out" | sed 's/^/    /'
		if [[ $FE_NAME == levee ]]; then
			echo "    levee after the level: $(levee_admission)"
		fi
		if [[ -n $FE_PID ]] && ! kill -0 "$FE_PID" 2>/dev/null; then
			# shellcheck disable=SC2034 # read by bench_cleanup in lib.sh
			BENCH_KEEP=1
			die "$FE_LABEL (pid $FE_PID) exited during the run; logs in $TMP"
		fi
	done
}

echo "== origin protection under overload: bench/overload.sh"
echo "machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "levee: $(cat "$BENCH_OUT/levee.rev" 2>/dev/null || echo "unknown build"); $("$BENCH_OUT/levee" version 2>/dev/null | head -1)"
((needs_nginx)) && echo "nginx: $(nginx -v 2>&1)"
echo "origin: $WORKERS workers x $SERVICE_MS ms = $CAPACITY req/s, unbounded FIFO queue; load: open loop, levels $LOADS x capacity, ${LEVEL_SECONDS}s each, timeout ${TIMEOUT}s, sources $SOURCES, verified $VERIFIED (share $VERIFIED_SHARE), up to 6 keep-alive connections per source"
echo "levee: GOMAXPROCS=$LEVEE_GOMAXPROCS, origin_protection defaults, allow [$VERIFIED], limits 1e6/s, detection without mitigation"
echo "nginx: worker_processes 1; limit_conn addr 10; limit_req 10r/s burst=20 nodelay (verified exempt); nginx-server adds limit_conn per server ($NGINX_SERVER_CONNS, verified exempt)"
echo

start_origin
for FE_NAME in $FRONTENDS; do
	if [[ $FE_NAME == nginx-server ]]; then
		for sc in $NGINX_SERVER_CONNS; do
			start_frontend nginx-server "$sc"
			run_levels
			[[ -n $FE_PID ]] && stop_pid "$FE_PID"
		done
		continue
	fi
	start_frontend "$FE_NAME"
	run_levels
	[[ -n $FE_PID ]] && stop_pid "$FE_PID"
done
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "goodput: 200 answers completed within each level's ${LEVEL_SECONDS}s, per second (capacity $CAPACITY req/s); admitted = answered 200"
"$BENCH_OUT/overload" table -capacity "$CAPACITY" "$RESULTS"
stamp=$(date -u +%Y%m%d-%H%M%S)
cp "$RESULTS" "$BENCH_OUT/overload-$stamp.results"
log "RESULT lines saved to $BENCH_OUT/overload-$stamp.results (bench/out/overload table FILE reprints the table)"
