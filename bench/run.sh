#!/usr/bin/env bash
# Side-by-side proxy benchmark on loopback: Levee, nginx and HAProxy in front
# of one nginx origin, each on the same CPU budget (GOMAXPROCS=1,
# worker_processes 1, nbthread 1).
#
#   bench/run.sh [throughput]   wrk -t1 -cCONNS through each proxy, interleaved
#   bench/run.sh reject         refusals per second of an over-limit and of a
#                               banned source, and a normal client meanwhile
#   bench/run.sh all            both
#   bench/run.sh syscalls       system calls per proxied request (strace -c;
#                               slows the proxies, so counts only, no timing)
#
# Environment: ROUNDS (5), DURATION (5, seconds per wrk run), CONNS (64),
# REJECT_ROUNDS (3), FLOOD_SECONDS (2), FLOOD_CONNS (64), LEGIT_SECONDS (2),
# LEVEE_DETECTION (detect-only: telemetry and detection run, automatic
# mitigation off, so the detector cannot rate-limit the benchmark's own
# single-source client; "on" as shipped; "off" to measure their cost),
# BENCH_NICE=1 (run every process under test and the load generators with
# nice -n -10), BENCH_NO_BUILD=1 (use bench/out/levee as built before, e.g.
# while another package of the tree does not compile), BENCH_KEEP=1 (keep the temp dir with configs and logs),
# BENCH_PROFILE=DIR (write Levee CPU profiles levee-{plain,overlimit,banned}.prof
# there; inspect with go tool pprof -top bench/out/levee DIR/levee-plain.prof).
#
# Safety: all traffic goes to 127.0.0.1 only; every load run is bounded in
# time; everything started here is stopped on exit. See bench/README.md.
set -euo pipefail

MODE=${1:-throughput}
case $MODE in throughput | reject | all | syscalls) ;; *)
	echo "usage: $0 [throughput|reject|all|syscalls]" >&2
	exit 2
	;;
esac

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
REJECT_ROUNDS=${REJECT_ROUNDS:-3}
FLOOD_SECONDS=${FLOOD_SECONDS:-2}
FLOOD_CONNS=${FLOOD_CONNS:-64}
LEGIT_SECONDS=${LEGIT_SECONDS:-2}
LEVEE_DETECTION=${LEVEE_DETECTION:-detect-only}
case $LEVEE_DETECTION in on | detect-only | off) ;; *)
	echo "LEVEE_DETECTION must be on, detect-only or off, got '$LEVEE_DETECTION'" >&2
	exit 2
	;;
esac
for v in ROUNDS DURATION CONNS REJECT_ROUNDS FLOOD_SECONDS FLOOD_CONNS LEGIT_SECONDS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
((DURATION <= 60 && FLOOD_SECONDS <= 60 && LEGIT_SECONDS <= 60)) || { echo "DURATION, FLOOD_SECONDS and LEGIT_SECONDS are capped at 60" >&2; exit 2; }
((ROUNDS <= 50 && REJECT_ROUNDS <= 50)) || { echo "ROUNDS and REJECT_ROUNDS are capped at 50" >&2; exit 2; }
((CONNS <= 1024 && FLOOD_CONNS <= 1024)) || { echo "CONNS and FLOOD_CONNS are capped at 1024" >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BENCH_OUT=${BENCH_OUT:-$HERE/out}
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
TMP=$(mktemp -d /tmp/levee-bench.XXXXXX)
chmod 755 "$TMP" # nginx workers run as nobody when started by root
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

BANNED_SRC=127.0.0.66 # the flooding source in the reject scenarios

# The proxies of the throughput run; BENCH_BARE=1 adds a bare fasthttp
# reverse proxy (bench/cmd/bareproxy, GOMAXPROCS=1) as the floor of what Go
# and fasthttp cost before any of Levee's own work. BENCH_EV=1 adds
# bench/cmd/evproxy ("evloop"), the same bare proxy on one epoll event loop
# instead of a goroutine per connection, with the flags in EV_FLAGS (for
# example "-defer -rawpoll"): the design question of BENCHMARKS.md.
PROXIES=(levee nginx haproxy)
[[ ${BENCH_BARE:-0} == 1 ]] && PROXIES+=(fasthttp)
[[ ${BENCH_EV:-0} == 1 ]] && PROXIES+=(evloop)

ensure_packages
if [[ ${BENCH_NO_BUILD:-0} == 1 && -x $BENCH_OUT/levee && -x $BENCH_OUT/connflood && (${BENCH_BARE:-0} != 1 || -x $BENCH_OUT/bareproxy) && (${BENCH_EV:-0} != 1 || -x $BENCH_OUT/evproxy) ]]; then
	log "BENCH_NO_BUILD=1: using the existing $BENCH_OUT/levee and connflood"
else
	build_tools
fi
write_wrk_lua

# ---------------------------------------------------------------- configs

# nginx_common, nginx_temp_paths and write_origin are in lib.sh.

# write_nginx_proxy NAME PORT ORIGIN_PORT MODE (plain|overlimit|banned)
write_nginx_proxy() {
	local name=$1 port=$2 origin=$3 mode=$4 dir=$TMP/$1 errlevel=warn http_extra="" server_extra=""
	mkdir -p "$dir"
	case $mode in
	overlimit)
		# limit_conn ~ max_connections_per_ip 2; limit_req 1r/s stands in for
		# the per-address new-connection rate (nginx has none; with one
		# request per connection it is the same count). The normal client
		# (127.0.0.1) is exempt from limit_req only: it uses one keep-alive
		# connection, which the connection limits allow everywhere.
		errlevel=crit # a rejection is logged per request at level error or warn
		http_extra="
    limit_conn_zone \$binary_remote_addr zone=perip:1m;
    map \$remote_addr \$req_limit_key { 127.0.0.1 \"\"; default \$binary_remote_addr; }
    limit_req_zone \$req_limit_key zone=perip_rate:1m rate=1r/s;"
		server_extra="
        limit_conn perip 2;
        limit_conn_status 503;
        limit_req zone=perip_rate;
        limit_req_status 429;"
		;;
	banned)
		errlevel=crit # "access forbidden by rule" is logged per request
		server_extra="
        deny $BANNED_SRC;"
		;;
	esac
	{
		nginx_common "$dir" "$errlevel"
		cat <<EOF
http {
    access_log off;
$(nginx_temp_paths "$dir")
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    client_header_timeout 10s;
$http_extra
    upstream origin {
        server 127.0.0.1:$origin;
        keepalive 64;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$port backlog=4096;
$server_extra
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }
}
EOF
	} >"$dir/nginx.conf"
	echo "$dir"
}

# write_haproxy NAME PORT ORIGIN_PORT MODE (plain|overlimit|banned)
write_haproxy() {
	local name=$1 port=$2 origin=$3 mode=$4 dir=$TMP/$1 extra=""
	mkdir -p "$dir"
	case $mode in
	overlimit)
		extra="
    stick-table type ip size 100k expire 30s store conn_cur,conn_rate(1s)
    tcp-request connection track-sc0 src
    tcp-request connection reject if { sc0_conn_cur gt 2 } || { sc0_conn_rate gt 2 }"
		;;
	banned)
		extra="
    tcp-request connection reject if { src $BANNED_SRC }"
		;;
	esac
	cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend fe
    bind 127.0.0.1:$port backlog 4096
    option forwardfor
    http-request set-header X-Forwarded-Proto http$extra
    default_backend be

backend be
    server origin 127.0.0.1:$origin
EOF
	echo "$dir"
}

# levee_policy_supported: does this levee build accept the top-level block:
# and limits: keys? (Checked once with `levee config check`.)
LEVEE_POLICY=""
levee_policy_supported() {
	if [[ -z $LEVEE_POLICY ]]; then
		local f=$TMP/policy-probe.yaml
		printf 'sites:\n  - upstreams: [{url: "http://127.0.0.1:1"}]\ndata_dir: %s\nblock: ["%s/32"]\nallow: ["127.0.0.1/32"]\nlimits:\n  - {name: probe, key: ip, rate: 1, burst: 1}\n' "$TMP/probe-data" "$BANNED_SRC" >"$f"
		if "$BENCH_OUT/levee" config check "$f" >/dev/null 2>&1; then LEVEE_POLICY=yes; else LEVEE_POLICY=no; fi
	fi
	[[ $LEVEE_POLICY == yes ]]
}

# levee_detection_supported: does this levee build have the detection: key?
LEVEE_DETECT_KEY=""
levee_detection_supported() {
	if [[ -z $LEVEE_DETECT_KEY ]]; then
		local f=$TMP/detect-probe.yaml
		printf 'sites:\n  - upstreams: [{url: "http://127.0.0.1:1"}]\ndata_dir: %s\ndetection:\n  disable_mitigation: true\n' "$TMP/probe-data" >"$f"
		if "$BENCH_OUT/levee" config check "$f" >/dev/null 2>&1; then LEVEE_DETECT_KEY=yes; else LEVEE_DETECT_KEY=no; fi
	fi
	[[ $LEVEE_DETECT_KEY == yes ]]
}

# levee_detection_yaml: the detection: section for LEVEE_DETECTION.
levee_detection_yaml() {
	levee_detection_supported || return 0
	case $LEVEE_DETECTION in
	detect-only) printf 'detection:\n  disable_mitigation: true\n' ;;
	off) printf 'detection:\n  disable: true\n' ;;
	esac
}

levee_detection_note() {
	if ! levee_detection_supported; then echo "this build has no detection: key"; return; fi
	case $LEVEE_DETECTION in
	detect-only) echo "telemetry and detection on, automatic mitigation off (LEVEE_DETECTION=detect-only)" ;;
	on) echo "telemetry, detection and automatic mitigation on (LEVEE_DETECTION=on)" ;;
	off) echo "telemetry and detection off (LEVEE_DETECTION=off)" ;;
	esac
}

# write_levee NAME PORT ADMIN_PORT ORIGIN_PORT MODE (plain|overlimit|banned)
write_levee() {
	local port=$2 admin=$3 origin=$4 mode=$5 dir=$TMP/$1
	mkdir -p "$dir/data"
	local maxper=1024 rate=1000 burst=2000 policy=""
	if levee_policy_supported; then
		# Request rate limits far above the test load (the built-in defaults,
		# 50/s per address, would throttle a benchmark from one address).
		policy="limits:
  - {name: bench-per-address, key: ip, rate: 100000000, burst: 100000000}
  - {name: bench-per-network, key: ip, v4_prefix: 24, rate: 100000000, burst: 100000000}"
	fi
	case $mode in
	plain | banned)
		if levee_policy_supported; then
			policy="$policy
block: [\"$BANNED_SRC/32\"]"
		fi
		;;
	overlimit)
		# 2 and burst 2, not 1: wrk opens a probe connection just before its
		# load connection, and the normal client must be within the limits.
		maxper=2
		rate=1
		burst=2
		if levee_policy_supported; then
			# As nginx's limit_req: 1 request/s per address, the normal
			# client exempt.
			policy="limits:
  - {name: bench-per-address, key: ip, rate: 1, burst: 1}
allow: [\"127.0.0.1/32\"]"
		fi
		;;
	esac
	cat >"$dir/levee.yaml" <<EOF
listen:
  - address: 127.0.0.1:$port
sites:
  - name: bench
    upstreams:
      - url: http://127.0.0.1:$origin
admin:
  address: 127.0.0.1:$admin
data_dir: $dir/data
guard:
  max_connections_per_ip: $maxper
  new_connections_per_ip: $rate
  new_connections_burst: $burst
log:
  level: info
$policy
$(levee_detection_yaml)
EOF
	"$BENCH_OUT/levee" config check "$dir/levee.yaml" >/dev/null || die "levee config $dir/levee.yaml does not validate"
	echo "$dir"
}

# ---------------------------------------------------------------- servers

declare -A PID PORT ADMIN
ORIGIN_PORT=""

start_origin() {
	free_port
	ORIGIN_PORT=$FREE_PORT
	local dir
	dir=$(write_origin "$ORIGIN_PORT")
	start_bg origin "$ORIGIN_PORT" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
	PID[origin]=$STARTED_PID
	log "origin nginx on 127.0.0.1:$ORIGIN_PORT (pid ${PID[origin]})"
}

# start_proxies MODE: start levee, nginx and haproxy configured for MODE.
start_proxies() {
	local mode=$1 dir
	free_port
	PORT[levee]=$FREE_PORT
	free_port
	ADMIN[levee]=$FREE_PORT
	dir=$(write_levee levee-"$mode" "${PORT[levee]}" "${ADMIN[levee]}" "$ORIGIN_PORT" "$mode")
	local envs=(env GOMAXPROCS=1)
	if [[ -n ${BENCH_PROFILE:-} ]]; then envs+=(LEVEE_CPUPROFILE="$BENCH_PROFILE/levee-$mode.prof"); fi
	start_bg levee-"$mode" "${PORT[levee]}" "${envs[@]}" "$BENCH_OUT/levee" serve -c "$dir/levee.yaml"
	PID[levee]=$STARTED_PID
	LEVEE_DIR=$dir

	free_port
	PORT[nginx]=$FREE_PORT
	dir=$(write_nginx_proxy nginx-"$mode" "${PORT[nginx]}" "$ORIGIN_PORT" "$mode")
	start_bg nginx-"$mode" "${PORT[nginx]}" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
	PID[nginx]=$STARTED_PID

	free_port
	PORT[haproxy]=$FREE_PORT
	dir=$(write_haproxy haproxy-"$mode" "${PORT[haproxy]}" "$ORIGIN_PORT" "$mode")
	start_bg haproxy-"$mode" "${PORT[haproxy]}" haproxy -db -f "$dir/haproxy.cfg"
	PID[haproxy]=$STARTED_PID
	log "$mode: levee :${PORT[levee]} (pid ${PID[levee]}), nginx :${PORT[nginx]} (pid ${PID[nginx]}), haproxy :${PORT[haproxy]} (pid ${PID[haproxy]})"
	if [[ $mode == plain && ${BENCH_BARE:-0} == 1 ]]; then
		free_port
		PORT[fasthttp]=$FREE_PORT
		start_bg fasthttp-"$mode" "${PORT[fasthttp]}" env GOMAXPROCS=1 "$BENCH_OUT/bareproxy" \
			-listen "127.0.0.1:${PORT[fasthttp]}" -upstream "127.0.0.1:$ORIGIN_PORT"
		PID[fasthttp]=$STARTED_PID
		log "$mode: bare fasthttp proxy :${PORT[fasthttp]} (pid ${PID[fasthttp]})"
	fi
	if [[ $mode == plain && ${BENCH_EV:-0} == 1 ]]; then
		free_port
		PORT[evloop]=$FREE_PORT
		# shellcheck disable=SC2086 # EV_FLAGS is a list of flags
		start_bg evloop-"$mode" "${PORT[evloop]}" env GOMAXPROCS=1 "$BENCH_OUT/evproxy" \
			-listen "127.0.0.1:${PORT[evloop]}" -upstream "127.0.0.1:$ORIGIN_PORT" ${EV_FLAGS:-}
		PID[evloop]=$STARTED_PID
		log "$mode: bare event-loop proxy :${PORT[evloop]} (pid ${PID[evloop]}, flags '${EV_FLAGS:-}')"
	fi
}

# check_alive NAME MODE: when proxy NAME has exited, print its log tail and
# keep the temp dir for inspection.
check_alive() {
	local p=$1 mode=${2#reject-}
	kill -0 "${PID[$p]}" 2>/dev/null && return 0
	log "$p (pid ${PID[$p]}) has exited; last lines of its log ($TMP/$p-$mode.log):"
	tail -40 "$TMP/$p-$mode.log" >&2 || true
	BENCH_KEEP=1
}

stop_proxies() {
	local p
	for p in "${PROXIES[@]}"; do [[ -n ${PID[$p]:-} ]] && stop_pid "${PID[$p]}"; done
	return 0
}

# levee_metrics: the guard and decide counters of the running Levee.
levee_metrics() {
	local tok m
	tok=$(cat "$LEVEE_DIR/data/admin.token" 2>/dev/null || true)
	if ! m=$(curl -fsS --max-time 10 -H "Authorization: Bearer $tok" "http://127.0.0.1:${ADMIN[levee]}/metrics" 2>&1); then
		echo "(admin /metrics unavailable: $m)"
		return 0
	fi
	grep -E '^levee_(guard_connections_(admitted|rejected)_total|decide_[a-z_]+_total|http_requests_total)' <<<"$m" | grep -v ' 0$' || true
}

# sanity: each proxy answers 200 "ok" and passes X-Forwarded-For.
sanity() {
	local p body
	for p in levee nginx haproxy; do
		body=$(curl -fsS --max-time 2 "http://127.0.0.1:${PORT[$p]}/") || die "$p does not answer on 127.0.0.1:${PORT[$p]}"
		[[ $body == ok ]] || die "$p answered '$body', want 'ok'"
		body=$(curl -fsS --max-time 2 "http://127.0.0.1:${PORT[$p]}/xff")
		log "  $p: GET / = 200 ok; origin sees X-Forwarded-For '${body#xff=}'"
	done
}

# ---------------------------------------------------------------- throughput

throughput() {
	echo
	echo "== throughput: wrk -t1 -c$CONNS, $ROUNDS rounds x ${DURATION}s per proxy, order rotated each round"
	machine_note
	[[ ${BENCH_NICE:-0} == 1 ]] && echo "BENCH_NICE=1: processes under test and wrk run under nice -n -10"
	start_proxies plain
	sanity
	local p r i res
	for p in "${PROXIES[@]}"; do run_wrk "http://127.0.0.1:${PORT[$p]}/" "$CONNS" 1 >/dev/null; done # warm pools
	local order=("${PROXIES[@]}") out=$TMP/throughput.tsv
	: >"$out"
	printf '%-6s %-8s %10s %9s %9s %12s %7s %6s\n' round proxy "req/s" "p50 ms" "p99 ms" "cpu us/req" errors "sys %"
	for ((r = 1; r <= ROUNDS; r++)); do
		for ((i = 0; i < ${#order[@]}; i++)); do
			p=${order[$(((i + r - 1) % ${#order[@]}))]}
			local t0 t1 u0 u1
			t0=$(tree_ticks_split "${PID[$p]}")
			res=$(run_wrk "http://127.0.0.1:${PORT[$p]}/" "$CONNS" "$DURATION")
			t1=$(tree_ticks_split "${PID[$p]}")
			u0=${t0% *} u1=${t1% *}
			t0=$((u0 + ${t0#* })) t1=$((u1 + ${t1#* }))
			[[ -n $res ]] || { check_alive "$p" plain; die "wrk against $p printed no result"; }
			local n us p50 p99 err
			n=$(kv "$res" requests)
			us=$(kv "$res" duration_us)
			p50=$(kv "$res" p50_us)
			p99=$(kv "$res" p99_us)
			err=$(kv "$res" errors)
			awk -v r="$r" -v p="$p" -v n="$n" -v us="$us" -v p50="$p50" -v p99="$p99" -v cpu="$(ticks_to_us $((t1 - t0)))" -v err="$err" \
				-v sys="$((t1 - t0 - (u1 - u0)))" -v all="$((t1 - t0))" \
				'BEGIN { printf "%d\t%s\t%.0f\t%.3f\t%.3f\t%.2f\t%d\t%.0f\n", r, p, n / (us / 1e6), p50 / 1000, p99 / 1000, (n > 0 ? cpu / n : 0), err, (all > 0 ? 100 * sys / all : 0) }' >>"$out"
			tail -1 "$out" | awk -F'\t' '{ printf "%-6s %-8s %10s %9s %9s %12s %7s %6s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
		done
	done
	echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
	local lm
	lm=$(levee_metrics)
	if [[ -n $lm ]]; then echo "levee counters (nonzero):"; sed 's/^/  /' <<<"$lm"; fi
	if levee_policy_supported; then
		echo "levee protections: guard (per-address 1024 conns, 1000 new/s burst 2000), block [$BANNED_SRC/32], limits 1e8 req/s per address and per /24"
	else
		echo "levee protections: guard (per-address 1024 conns, 1000 new/s burst 2000); this build has no block:/limits: keys"
	fi
	echo "levee detection: $(levee_detection_note)"
	stop_proxies
	throughput_summary "$out"
}

throughput_summary() {
	local out=$1 p
	declare -A RPS P50 P99 CPU ERR SYS
	for p in "${PROXIES[@]}"; do
		SYS[$p]=$(awk -F'\t' -v p="$p" '$2 == p { print $8 }' "$out" | median)
		RPS[$p]=$(awk -F'\t' -v p="$p" '$2 == p { print $3 }' "$out" | median)
		P50[$p]=$(awk -F'\t' -v p="$p" '$2 == p { print $4 }' "$out" | median)
		P99[$p]=$(awk -F'\t' -v p="$p" '$2 == p { print $5 }' "$out" | median)
		CPU[$p]=$(awk -F'\t' -v p="$p" '$2 == p { print $6 }' "$out" | median)
		ERR[$p]=$(awk -F'\t' -v p="$p" '$2 == p { s += $7 } END { print s + 0 }' "$out")
	done
	echo
	echo "summary (median of $ROUNDS rounds):"
	printf '| %-8s | %10s | %8s | %8s | %12s | %6s | %7s |\n' proxy "req/s" "p50 ms" "p99 ms" "cpu us/req" "sys %" errors
	printf '|----------|-----------:|---------:|---------:|-------------:|-------:|--------:|\n'
	for p in "${PROXIES[@]}"; do
		printf '| %-8s | %10.0f | %8.3f | %8.3f | %12.2f | %6.0f | %7d |\n' "$p" "${RPS[$p]}" "${P50[$p]}" "${P99[$p]}" "${CPU[$p]}" "${SYS[$p]}" "${ERR[$p]}"
	done
	local o
	local others=(haproxy nginx)
	[[ ${BENCH_BARE:-0} == 1 ]] && others+=(fasthttp)
	[[ ${BENCH_EV:-0} == 1 ]] && others+=(evloop)
	for o in "${others[@]}"; do
		echo "levee/$o: req/s $(ratio "${RPS[levee]}" "${RPS[$o]}"), p50 $(ratio "${P50[levee]}" "${P50[$o]}"), p99 $(ratio "${P99[levee]}" "${P99[$o]}"), cpu/req $(ratio "${CPU[levee]}" "${CPU[$o]}")"
	done
	local tput p99ok
	tput=$(awk -v a="${RPS[levee]}" -v b="${RPS[haproxy]}" 'BEGIN { print (a >= b ? "yes" : "NO") }')
	p99ok=$(awk -v a="${P99[levee]}" -v b="${P99[haproxy]}" 'BEGIN { print (a <= b ? "yes" : "NO") }')
	echo "target (issue): levee req/s >= haproxy: $tput; levee p99 <= haproxy: $p99ok"
}

# ---------------------------------------------------------------- reject path

# flood NAME: connflood from $BANNED_SRC against proxy NAME; prints RESULT.
flood() {
	# shellcheck disable=SC2046
	$(nice_prefix) "$BENCH_OUT/connflood" -target "127.0.0.1:${PORT[$1]}" -src "$BANNED_SRC" \
		-conns "$FLOOD_CONNS" -duration "${2}s" -max-requests 5000000 -timeout 1s | grep '^RESULT ' || true
}

# reject_scenario MODE (overlimit|banned)
reject_scenario() {
	local mode=$1 legit_conns=8
	[[ $mode == overlimit ]] && legit_conns=1
	start_proxies "$mode"
	if [[ $mode == banned ]]; then
		local pre
		pre=$("$BENCH_OUT/connflood" -target "127.0.0.1:${PORT[levee]}" -src "$BANNED_SRC" -conns 1 -duration 2s -max-requests 20 -timeout 1s | grep '^RESULT ')
		if (($(kv "$pre" status_200) > 0)); then
			echo "banned scenario SKIPPED: this levee build accepts block: but still serves $BANNED_SRC ($pre)"
			stop_proxies
			return 0
		fi
	fi
	local out=$TMP/reject-$mode.tsv order=(levee nginx haproxy) r i p
	: >"$out"
	printf '%-5s %-8s %11s %11s %9s %11s %9s %11s %9s %9s\n' round server "attempts/s" "refused/s" "200/s" "cpu us/ref" "legit r/s" "+flood r/s" "p99 ms" "errors"
	for ((r = 1; r <= REJECT_ROUNDS; r++)); do
		for ((i = 0; i < 3; i++)); do
			p=${order[$(((i + r - 1) % 3))]}
			local t0 t1 fl base under fpid
			t0=$(tree_ticks "${PID[$p]}")
			fl=$(flood "$p" "$FLOOD_SECONDS")
			t1=$(tree_ticks "${PID[$p]}")
			base=$(run_wrk "http://127.0.0.1:${PORT[$p]}/" "$legit_conns" "$LEGIT_SECONDS")
			flood "$p" $((LEGIT_SECONDS + 2)) >"$TMP/flood-bg.out" &
			fpid=$!
			sleep 1 # the flood is under way (and the normal client's 1/s connection budget refilled)
			under=$(run_wrk "http://127.0.0.1:${PORT[$p]}/" "$legit_conns" "$LEGIT_SECONDS")
			wait "$fpid" || true
			[[ -n $fl && -n $base && -n $under ]] || { check_alive "$p" "reject-$mode"; die "no result from flood or wrk against $p"; }
			# Turned away: no answer at all, or any answer but 200.
			awk -v r="$r" -v p="$p" -v el="$(kv "$fl" elapsed_s)" -v att="$(kv "$fl" attempts)" -v ref="$(kv "$fl" refused)" \
				-v ans="$(kv "$fl" answered)" -v ok="$(kv "$fl" status_200)" -v ct="$(kv "$fl" connect_timeout)" -v cpu="$(ticks_to_us $((t1 - t0)))" \
				-v bn="$(kv "$base" requests)" -v bus="$(kv "$base" duration_us)" -v un="$(kv "$under" requests)" -v uus="$(kv "$under" duration_us)" \
				-v up99="$(kv "$under" p99_us)" -v uerr="$(kv "$under" errors)" '
				BEGIN {
					away = ref + ans - ok
					printf "%d\t%s\t%.0f\t%.0f\t%.1f\t%.2f\t%.0f\t%.0f\t%.3f\t%d\t%d\n", r, p, att / el, away / el, ok / el,
						(away > 0 ? cpu / away : 0), bn / (bus / 1e6), un / (uus / 1e6), up99 / 1000, uerr, ct
				}' >>"$out"
			tail -1 "$out" | awk -F'\t' '{ printf "%-5s %-8s %11s %11s %9s %11s %9s %11s %9s %9s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }'
		done
	done
	echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
	local lm
	lm=$(levee_metrics)
	if [[ -n $lm ]]; then echo "levee counters (nonzero):"; sed 's/^/  /' <<<"$lm"; fi
	stop_proxies
	reject_summary "$out" "$mode" "$legit_conns"
}

reject_summary() {
	local out=$1 mode=$2 legit_conns=$3 p
	declare -A ATT REF OK CPU BASE UNDER P99 CT
	for p in levee nginx haproxy; do
		ATT[$p]=$(awk -F'\t' -v p="$p" '$2 == p { print $3 }' "$out" | median)
		REF[$p]=$(awk -F'\t' -v p="$p" '$2 == p { print $4 }' "$out" | median)
		OK[$p]=$(awk -F'\t' -v p="$p" '$2 == p { print $5 }' "$out" | median)
		CPU[$p]=$(awk -F'\t' -v p="$p" '$2 == p { print $6 }' "$out" | median)
		BASE[$p]=$(awk -F'\t' -v p="$p" '$2 == p { print $7 }' "$out" | median)
		UNDER[$p]=$(awk -F'\t' -v p="$p" '$2 == p { print $8 }' "$out" | median)
		P99[$p]=$(awk -F'\t' -v p="$p" '$2 == p { print $9 }' "$out" | median)
		CT[$p]=$(awk -F'\t' -v p="$p" '$2 == p { s += $11 } END { print s + 0 }' "$out")
	done
	echo
	echo "summary $mode (median of $REJECT_ROUNDS rounds; flood: $FLOOD_CONNS connections from $BANNED_SRC, one request each; normal client: wrk -t1 -c$legit_conns from 127.0.0.1):"
	printf '| %-8s | %10s | %10s | %7s | %11s | %12s | %12s | %10s | %8s |\n' server "attempts/s" "refused/s" "200/s" "cpu us/ref" "normal r/s" "under flood" "normal p99" "conn t/o"
	printf '|----------|-----------:|-----------:|--------:|------------:|-------------:|-------------:|-----------:|---------:|\n'
	for p in levee nginx haproxy; do
		printf '| %-8s | %10.0f | %10.0f | %7.1f | %11.2f | %12.0f | %12.0f | %10.3f | %8d |\n' "$p" "${ATT[$p]}" "${REF[$p]}" "${OK[$p]}" "${CPU[$p]}" "${BASE[$p]}" "${UNDER[$p]}" "${P99[$p]}" "${CT[$p]}"
	done
	local o
	for o in nginx haproxy; do
		echo "levee/$o ($mode): refused/s $(ratio "${REF[levee]}" "${REF[$o]}"), cpu per refusal $(ratio "${CPU[levee]}" "${CPU[$o]}"), normal client under flood $(ratio "${UNDER[levee]}" "${UNDER[$o]}")"
	done
}

reject() {
	echo
	echo "== reject path: $REJECT_ROUNDS rounds; per server and round: ${FLOOD_SECONDS}s flood alone, ${LEGIT_SECONDS}s normal client alone, ${LEGIT_SECONDS}s normal client during a flood"
	machine_note
	echo "levee detection: $(levee_detection_note)"
	[[ ${BENCH_NICE:-0} == 1 ]] && echo "BENCH_NICE=1: processes under test, wrk and connflood run under nice -n -10"
	if levee_policy_supported; then
		echo "over-limit: levee guard max_connections_per_ip 2, new_connections_per_ip 1 burst 2, limits 1 req/s per address (127.0.0.1 allowed); nginx limit_conn 2, limit_req 1r/s (127.0.0.1 exempt); haproxy reject if conn_cur > 2 or conn_rate(1s) > 2"
		echo "banned: levee block [$BANNED_SRC/32]; nginx deny $BANNED_SRC (403); haproxy tcp-request connection reject if src $BANNED_SRC"
	else
		echo "over-limit: levee guard max_connections_per_ip 2, new_connections_per_ip 1 burst 2; nginx limit_conn 2, limit_req 1r/s (127.0.0.1 exempt); haproxy reject if conn_cur > 2 or conn_rate(1s) > 2"
		echo "levee: this build has no block:/limits: keys; only the over-limit scenario (guard limits) is measured"
	fi
	echo
	echo "-- over-limit source"
	reject_scenario overlimit
	if levee_policy_supported; then
		echo
		echo "-- banned source"
		reject_scenario banned
	fi
}

# ---------------------------------------------------------------- syscalls

# syscalls: count each proxy's system calls per request while wrk -c$CONNS
# runs through it. With perf (and tracefs, mounted here if needed) the
# counts come from kernel tracepoints, which barely slow the proxy, and
# reads that returned EAGAIN are counted on their own; otherwise strace -c
# -f is used, which slows the traced process a lot (counts only; timing
# shifts how often a read finds no data).
syscalls() {
	local tool=strace
	if command -v perf >/dev/null 2>&1; then
		[[ -e /sys/kernel/tracing/events/raw_syscalls ]] || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
		if perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then tool=perf; fi
	fi
	[[ $tool == perf ]] || command -v strace >/dev/null 2>&1 || die "neither perf nor strace works here (apt-get install linux-perf strace)"
	echo
	echo "== system calls per request ($tool) on each proxy during wrk -t1 -c$CONNS -d${DURATION}s"
	start_proxies plain
	local p pids args res n spid
	for p in levee nginx haproxy; do
		run_wrk "http://127.0.0.1:${PORT[$p]}/" "$CONNS" 1 >/dev/null # warm pools
		mapfile -t pids < <(tree_pids "${PID[$p]}")
		if [[ $tool == perf ]]; then
			local evs=() e
			for e in read recvfrom write writev sendto epoll_wait epoll_pwait futex nanosleep; do
				evs+=(-e "syscalls:sys_enter_$e")
			done
			perf stat -x, -o "$TMP/perf-$p.txt" -e raw_syscalls:sys_enter "${evs[@]}" \
				-e syscalls:sys_exit_read --filter 'ret == -11' \
				-e syscalls:sys_exit_recvfrom --filter 'ret == -11' \
				-p "$(IFS=,; echo "${pids[*]}")" &
		else
			args=()
			for n in "${pids[@]}"; do args+=(-p "$n"); done
			strace -c -f -o "$TMP/strace-$p.txt" "${args[@]}" 2>/dev/null &
		fi
		spid=$!
		sleep 1 # attached
		res=$(run_wrk "http://127.0.0.1:${PORT[$p]}/" "$CONNS" "$DURATION")
		kill -INT "$spid" 2>/dev/null || true
		wait "$spid" 2>/dev/null || true
		n=$(kv "$res" requests)
		echo
		echo "$p: $n requests while counted; system calls per request:"
		if [[ $tool == perf ]]; then
			# CSV: count,unit,event,... ; the exit events count EAGAIN.
			awk -F, -v n="$n" '
				$3 ~ /sys_exit_/ { sub(/.*sys_exit_/, "", $3); printf "  %-16s %8.2f\n", $3 " EAGAIN", $1 / n; next }
				$3 ~ /sys_enter_/ { sub(/.*sys_enter_/, "", $3); if ($1 > 0) printf "  %-16s %8.2f\n", $3, $1 / n; next }
				$3 == "raw_syscalls:sys_enter" { total = $1 }
				END { if (n > 0) printf "  %-16s %8.2f\n", "all syscalls", total / n }' "$TMP/perf-$p.txt"
		else
			awk -v n="$n" '
				/^%/ || /^-/ || NF < 4 { next }
				# % time, seconds, usecs/call, calls, [errors], syscall; the
				# total line has no usecs/call.
				$NF == "total" { next }
				{ total += $4; printf "  %-16s %8.2f  (errors %.2f)\n", $NF, $4 / n, (NF == 6 ? $5 : 0) / n }
				END { if (n > 0) printf "  %-16s %8.2f\n", "total", total / n }' "$TMP/strace-$p.txt"
		fi
	done
	stop_proxies
}

# ---------------------------------------------------------------- main

levee_policy_supported || true # decide once, outside any subshell
levee_detection_supported || true
if [[ -n ${BENCH_PROFILE:-} ]]; then
	mkdir -p "$BENCH_PROFILE"
	BENCH_PROFILE=$(cd "$BENCH_PROFILE" && pwd)
fi
start_origin
case $MODE in
throughput) throughput ;;
reject) reject ;;
all)
	throughput
	reject
	;;
syscalls) syscalls ;;
esac
