# shellcheck shell=bash
# Helpers shared by bench/run.sh: package checks, build, ports, process
# start/stop, CPU accounting from /proc, wrk and connflood runs, medians.
# Sourced, not executed. Everything started here is recorded in BENCH_PIDS
# and stopped by bench_cleanup (installed as an EXIT trap by run.sh).

BENCH_PIDS=()
BENCH_PORTS=()
CLK_TCK=$(getconf CLK_TCK)

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ensure_packages installs nginx, haproxy and wrk from Debian packages when
# one of them is missing (apt-get update once; nginx-light if the archive has
# it, else nginx).
ensure_packages() {
	local missing=()
	command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
	command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
	command -v wrk >/dev/null 2>&1 || missing+=(wrk)
	command -v curl >/dev/null 2>&1 || missing+=(curl)
	((${#missing[@]} == 0)) && return 0
	log "missing: ${missing[*]}; installing from Debian packages"
	local sudo=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 || die "need root or sudo to install ${missing[*]}"
		sudo=(sudo)
	fi
	"${sudo[@]}" apt-get update
	local pkgs=() p
	for p in "${missing[@]}"; do
		if [[ $p == nginx ]]; then
			if apt-cache show nginx-light >/dev/null 2>&1; then pkgs+=(nginx-light); else pkgs+=(nginx); fi
		else
			pkgs+=("$p")
		fi
	done
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}"
}

# build_tools builds levee and connflood into $BENCH_OUT.
build_tools() {
	local go=go
	command -v go >/dev/null 2>&1 || go=/usr/local/go/bin/go
	mkdir -p "$BENCH_OUT"
	log "building levee, connflood, bareproxy and evproxy into $BENCH_OUT"
	(cd "$REPO" && "$go" build -o "$BENCH_OUT/levee" ./cmd/levee && "$go" build -o "$BENCH_OUT/connflood" ./bench/cmd/connflood &&
		"$go" build -o "$BENCH_OUT/bareproxy" ./bench/cmd/bareproxy && "$go" build -o "$BENCH_OUT/evproxy" ./bench/cmd/evproxy) ||
		die "build failed (another package may be mid-edit); retry, or BENCH_NO_BUILD=1 to use the previous bench/out/levee"
	# The working tree is shared: record which commit it was at, and whether
	# other files were modified, next to the binary.
	local rev dirty=""
	rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
	[[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]] && dirty=" + uncommitted changes"
	echo "working tree at $rev$dirty, built $(date -u +%Y-%m-%dT%H:%MZ)" >"$BENCH_OUT/levee.rev"
}

# free_port sets FREE_PORT to a loopback TCP port nobody listens on and that
# this run has not handed out yet. (Not printed: a $(...) subshell would lose
# the record of ports handed out.)
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 10000))
		[[ " ${BENCH_PORTS[*]} " == *" $p "* ]] && continue
		if [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]]; then
			BENCH_PORTS+=("$p")
			FREE_PORT=$p
			return 0
		fi
	done
	die "no free port found"
}

# wait_listen PORT PID: wait until something listens on 127.0.0.1:PORT
# (checked with ss, so no connection counts against any limit).
wait_listen() {
	local port=$1 pid=$2 i
	for ((i = 0; i < 100; i++)); do
		[[ -n $(ss -Htln "( sport = :$port )" 2>/dev/null) ]] && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# nice_prefix prints the command prefix for processes under test.
nice_prefix() {
	if [[ ${BENCH_NICE:-0} == 1 ]]; then echo "nice -n -10"; fi
}

# start_bg NAME PORT CMD...: start CMD in the background (under nice -n -10
# when BENCH_NICE=1), log to $TMP/NAME.log, wait for PORT, set STARTED_PID.
# Call it directly, not in $(...), so the PID is recorded for cleanup.
start_bg() {
	local name=$1 port=$2
	shift 2
	# shellcheck disable=SC2046
	$(nice_prefix) "$@" >"$TMP/$name.log" 2>&1 &
	local pid=$!
	BENCH_PIDS+=("$pid")
	if ! wait_listen "$port" "$pid"; then
		sed 's/^/    /' "$TMP/$name.log" >&2
		die "$name did not start listening on 127.0.0.1:$port"
	fi
	STARTED_PID=$pid
}

# stop_pid PID: TERM, wait up to 5 s, then KILL. Only for PIDs we started.
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
	local pid
	for pid in "${BENCH_PIDS[@]}"; do stop_pid "$pid"; done
	BENCH_PIDS=()
	if [[ -n ${TMP:-} && -d $TMP ]]; then
		if [[ ${BENCH_KEEP:-0} == 1 ]]; then
			log "kept $TMP"
		else
			rm -rf "$TMP"
		fi
	fi
}

# tree_ticks PID: user+system CPU clock ticks of PID and all its live
# descendants (nginx master + worker; levee and haproxy are one process).
tree_ticks() {
	local ut
	ut=$(tree_ticks_split "$1")
	echo $((${ut% *} + ${ut#* }))
}

# tree_ticks_split PID: "USER SYSTEM" CPU clock ticks of PID and its live
# descendants.
tree_ticks_split() {
	local f line
	for f in /proc/[0-9]*/stat; do
		# pid (comm) state ppid ... utime(14) stime(15): cut at the last ')'.
		{ read -r line <"$f"; } 2>/dev/null || continue
		echo "${line%% *} ${line##*) }"
	done | awk -v root="$1" '
		{ pid = $1; ppid[pid] = $3; u[pid] = $13; k[pid] = $14 }
		END {
			in_tree[root] = 1; changed = 1
			while (changed) {
				changed = 0
				for (p in ppid) if (!(p in in_tree) && (ppid[p] in in_tree)) { in_tree[p] = 1; changed = 1 }
			}
			su = 0; sk = 0; for (p in in_tree) { su += u[p]; sk += k[p] }; print su, sk
		}'
}

# tree_pids PID: PID and its live descendants, one per line.
tree_pids() {
	local f line
	for f in /proc/[0-9]*/stat; do
		{ read -r line <"$f"; } 2>/dev/null || continue
		echo "${line%% *} ${line##*) }"
	done | awk -v root="$1" '
		{ ppid[$1] = $3 }
		END {
			in_tree[root] = 1; changed = 1
			while (changed) {
				changed = 0
				for (p in ppid) if (!(p in in_tree) && (ppid[p] in in_tree)) { in_tree[p] = 1; changed = 1 }
			}
			for (p in in_tree) print p
		}'
}

# ticks_to_us TICKS: clock ticks to microseconds.
ticks_to_us() { echo $(($1 * 1000000 / CLK_TCK)); }

# write_wrk_lua: a wrk script whose done() prints one RESULT line.
write_wrk_lua() {
	cat >"$TMP/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d status_errors=%d timeouts=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status, e.status, e.timeout))
end
EOF
}

# run_wrk URL CONNS SECONDS: run wrk -t1 and print its RESULT line.
run_wrk() {
	local url=$1 conns=$2 secs=$3
	# shellcheck disable=SC2046
	$(nice_prefix) wrk -t1 -c"$conns" -d"${secs}s" --timeout 2s -s "$TMP/report.lua" "$url" | grep '^RESULT ' || true
}

# kv LINE KEY: the value of KEY=VALUE in LINE (0 when absent).
kv() {
	local v
	v=$(grep -o "[[:space:]]$2=[^[:space:]]*" <<<" $1" | head -1 | cut -d= -f2)
	echo "${v:-0}"
}

# median: the median of the numbers on stdin (mean of the middle two for an
# even count).
median() {
	sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ratio A B: A/B with two decimals, or n/a.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "nan" || b == "nan") print "n/a"; else printf "%.2f", a / b }'; }

# machine_note: one paragraph describing where the numbers come from.
machine_note() {
	local model
	model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	echo "machine: $(nproc) CPUs ($model), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "levee: $(cat "$BENCH_OUT/levee.rev" 2>/dev/null || echo "unknown build")"
	echo "versions: $("$BENCH_OUT/levee" version 2>/dev/null | head -1); $(nginx -v 2>&1); $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
}

# nginx_common DIR: the main-context lines every nginx here shares.
nginx_common() {
	local dir=$1 errlevel=$2
	mkdir -p "$dir/tmp"
	cat <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log $errlevel;
events { worker_connections 4096; }
EOF
}

nginx_temp_paths() {
	local dir=$1
	cat <<EOF
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
EOF
}

# write_origin PORT: nginx origin answering a 3-byte body.
write_origin() {
	local dir=$TMP/origin
	mkdir -p "$dir"
	{
		nginx_common "$dir" warn
		cat <<EOF
http {
    access_log off;
$(nginx_temp_paths "$dir")
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$1 backlog=4096;
        location / { default_type text/plain; return 200 "ok\n"; }
        location = /xff { default_type text/plain; return 200 "xff=\$http_x_forwarded_for\n"; }
    }
}
EOF
	} >"$dir/nginx.conf"
	echo "$dir"
}
