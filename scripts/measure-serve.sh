#!/usr/bin/env bash
# Measurements for `starvation serve` (quoted in docs/workload.md):
#  1. threads injected per second under a 70-request burst (--min-threads 1 --block-ms 2000);
#  2. requests/s of /test-threadpool with --block-ms 0, measured with wrk;
#  3. idle CPU of the Pushgateway pusher (1 s interval) against the real Pushgateway.
# Needs: a release build (cargo build --release), curl, wrk, prometheus-pushgateway.
# Everything listens on loopback and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/starvation
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
for tool in curl wrk prometheus-pushgateway; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install ${tool/curl/curl}" >&2; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Starts `starvation serve ARGS` on a free port; sets $addr and $pid.
serve() {
    "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data-$RANDOM" "$@" >"$work/out" 2>"$work/err" &
    pid=$!; pids+=("$pid")
    for _ in $(seq 100); do addr=$(sed -n 's#listening on http://##p' "$work/out"); [ -n "$addr" ] && return; sleep 0.1; done
    echo "serve did not start: $(cat "$work/err")" >&2; exit 1
}
metric() { curl -s "http://$addr/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

echo "== 1. injection under a 70-request burst (--min-threads 1 --block-ms 2000)"
serve --min-threads 1 --block-ms 2000
for _ in $(seq 70); do curl -s -o /dev/null "http://$addr/test-threadpool" & done
start=$(date +%s.%N)
printf '%6s %6s %6s %8s %10s\n' t_s queue busy threads injected
while :; do
    now=$(date +%s.%N); t=$(echo "$now - $start" | bc)
    q=$(metric system_runtime_threadpool_queue_length); b=$(metric busy_worker_threads)
    th=$(metric process_number_of_threads); inj=$(metric threadpool_starvation_injections_total)
    printf '%6.1f %6s %6s %8s %10s\n' "$t" "$q" "$b" "$th" "$inj"
    if [ "$q" = 0 ]; then starved=$t; break; fi
    sleep 1
done
inj=$(metric threadpool_starvation_injections_total)
echo "injected $inj threads in ${starved}s of starvation: $(echo "scale=2; $inj / $starved" | bc) threads/s"
wait_curls=$(jobs -p | wc -l); sleep 2.5
kill "$pid"; wait "$pid" 2>/dev/null || true

echo "== 2. wrk against /test-threadpool --block-ms 0 (default min threads = CPUs)"
serve --block-ms 0
wrk -t2 -c32 -d10s "http://$addr/test-threadpool" | sed 's/^/    /'
kill "$pid"; wait "$pid" 2>/dev/null || true

echo "== 3. idle CPU with and without the pusher (30 s each, 1 s push interval)"
gw_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
prometheus-pushgateway --web.listen-address="127.0.0.1:$gw_port" --persistence.file= >/dev/null 2>&1 &
pids+=($!); sleep 1
hz=$(getconf CLK_TCK)
for mode in without with; do
    if [ $mode = with ]; then serve --pushgateway "http://127.0.0.1:$gw_port"; else serve; fi
    sleep 2; a=$(cpu_ticks "$pid"); sleep 30; b=$(cpu_ticks "$pid")
    echo "    $mode pusher: $((b - a)) ticks in 30 s = $(echo "scale=3; ($b - $a) * 100 / $hz / 30" | bc) % of one CPU"
    kill "$pid"; wait "$pid" 2>/dev/null || true
done
