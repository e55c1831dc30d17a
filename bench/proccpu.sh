#!/usr/bin/env bash
# Where the CPU of a proxied request goes: per-process CPU per request of
# the proxy, the origin (nginx, one worker) and wrk, the machine's idle
# share, and (with nstat) TCP segments and bytes per request, for HAProxy
# (nbthread 1) and for bench/cmd/evproxy (GOMAXPROCS=1) in each of the
# EV_VARIANTS, runs alternating. This is the measurement behind the
# "Would an event loop reach HAProxy?" section of BENCHMARKS.md.
#
#   bench/proccpu.sh                 3 rounds x 3 s per proxy
#   ROUNDS=4 SECS=4 EV_VARIANTS="plain|-defer|-spin 20" bench/proccpu.sh
#
# EV_VARIANTS: evproxy flag sets separated by "|" ("plain" = no flags).
# Safety: every process listens and every request goes to 127.0.0.1; each
# wrk run is bounded in time; everything started is stopped on exit.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
EV_VARIANTS=${EV_VARIANTS:-plain|-defer|-rawpoll}
[[ $ROUNDS =~ ^[1-9][0-9]?$ && $SECS =~ ^[2-9]$|^[1-5][0-9]$ ]] || { echo "ROUNDS 1-99, SECS 2-59" >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BENCH_OUT=${BENCH_OUT:-$HERE/out}
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
TMP=$(mktemp -d /tmp/levee-proccpu.XXXXXX)
chmod 755 "$TMP"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
nice_prefix() { :; }

ensure_packages
mkdir -p "$BENCH_OUT"
(cd "$REPO" && go build -o "$BENCH_OUT/evproxy" ./bench/cmd/evproxy) || die "build of evproxy failed"

free_port
ORIGIN=$FREE_PORT
dir=$(write_origin "$ORIGIN")
start_bg origin "$ORIGIN" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
sleep 0.3
WORKER=$(pgrep -P "$STARTED_PID" | head -1)
[[ -n $WORKER ]] || die "no nginx worker"

declare -A PORT PID
NAMES=()
free_port
PORT[haproxy]=$FREE_PORT
cat >"$TMP/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend fe
    bind 127.0.0.1:${PORT[haproxy]}
    default_backend be
backend be
    http-reuse always
    server o 127.0.0.1:$ORIGIN
CONF
start_bg haproxy "${PORT[haproxy]}" haproxy -db -f "$TMP/haproxy.cfg"
PID[haproxy]=$STARTED_PID
NAMES+=(haproxy)
IFS='|' read -r -a variants <<<"$EV_VARIANTS"
for v in "${variants[@]}"; do
	name="ev:${v// /}"
	flags=()
	[[ $v == plain ]] || read -r -a flags <<<"$v"
	free_port
	PORT[$name]=$FREE_PORT
	start_bg "evproxy${#NAMES[@]}" "$FREE_PORT" env GOMAXPROCS=1 "$BENCH_OUT/evproxy" \
		-listen "127.0.0.1:$FREE_PORT" -upstream "127.0.0.1:$ORIGIN" "${flags[@]}"
	PID[$name]=$STARTED_PID
	NAMES+=("$name")
done

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
cpu() { awk '/^cpu / { print $2+$3+$4+$6+$7+$8, $5 }' /proc/stat; }
nst() { command -v nstat >/dev/null && nstat -az 2>/dev/null | awk '$1 ~ /^(TcpInSegs|IpExtInOctets)$/ { print $1, $2 }' | sort || true; }

for p in "${NAMES[@]}"; do wrk -t1 -c64 -d1s "http://127.0.0.1:${PORT[$p]}/" >/dev/null; done # warm pools
printf '%-16s %8s %10s %10s %10s %10s %6s %9s %9s\n' proxy req/s "proxy us" "origin us" "wrk us" "all us" idle% "segs/req" "bytes/req"
for ((r = 0; r < ROUNDS; r++)); do
	for p in "${NAMES[@]}"; do
		p0=$(ticks "${PID[$p]}") o0=$(ticks "$WORKER")
		read -r b0 i0 < <(cpu)
		n0=$(nst)
		wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:${PORT[$p]}/" >"$TMP/wrk.out" &
		wp=$!
		sleep 0.05
		w0=$(ticks "$wp")
		sleep $((SECS - 1))
		w1=$(ticks "$wp")
		wait "$wp"
		p1=$(ticks "${PID[$p]}") o1=$(ticks "$WORKER")
		read -r b1 i1 < <(cpu)
		n1=$(nst)
		rps=$(awk '/Requests\/sec/ { print $2 }' "$TMP/wrk.out")
		segs=$(join <(echo "$n0") <(echo "$n1") 2>/dev/null | awk '$1 == "TcpInSegs" { print $3 - $2 }')
		octs=$(join <(echo "$n0") <(echo "$n1") 2>/dev/null | awk '$1 == "IpExtInOctets" { print $3 - $2 }')
		awk -v n="$p" -v r="$rps" -v s="$SECS" -v p=$((p1 - p0)) -v o=$((o1 - o0)) -v w=$((w1 - w0)) \
			-v b=$((b1 - b0)) -v i=$((i1 - i0)) -v t="$CLK_TCK" -v sg="${segs:-0}" -v oc="${octs:-0}" 'BEGIN {
			q = r * s; u = 1e6 / t
			printf "%-16s %8.0f %10.1f %10.1f %10.1f %10.1f %6.0f %9.2f %9.0f\n", n, r, p*u/q, o*u/q, w*u/(r*(s-1)), b*u/q, 100*i/(b+i), sg/q, oc/q }'
	done
done
