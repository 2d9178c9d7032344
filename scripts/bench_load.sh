#!/usr/bin/env bash
# Loopback measurements of `starvation load` (docs/load.md, "Measurements"):
#   1. highest sustained arrival rate against a trivial endpoint, next to wrk on the same server;
#   2. start-lag p99 at 2,000 iterations/s;
#   3. memory (max RSS) with 1,000 VUs busy.
# Everything runs on 127.0.0.1 and is bounded in time; the server is killed on exit.
# Usage: scripts/bench_load.sh [SECONDS_PER_STEP] [RATES...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
rates=("$@")
((${#rates[@]})) || rates=(2000 5000 10000 15000 20000 25000 30000)

cargo build --release --quiet --bin starvation --example trivial_server
bin=target/release/starvation
srv=target/release/examples/trivial_server
ulimit -n 65536 2>/dev/null || true
out=$(mktemp -d)
server_pid=
cleanup() { [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT

start_server() { # DELAY_MS THREADS
    [[ -n $server_pid ]] && { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; }
    "$srv" 127.0.0.1:0 "$1" "$2" >"$out/server.txt" &
    server_pid=$!
    for _ in $(seq 50); do grep -q listening "$out/server.txt" 2>/dev/null && break; sleep 0.1; done
    url="http://$(awk '{print $3}' "$out/server.txt")/"
}

field() { # FILE KEY.PATH
    python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$1" "$2"
}

load() { # RATE SECONDS VUS extra...
    local rate=$1 s=$2 vus=$3; shift 3
    "$bin" load --no-progress --url "$url" --stages "$rate:${s}s" --start-rate "$rate" \
        --pre-allocated-vus "$vus" --max-vus "$vus" --graceful-stop 5s --timeout 10s \
        --format json --summary "$out/s.json" "$@" 2>/dev/null
}

echo "== 1. trivial endpoint (server: 1 worker thread, no delay), ${secs}s per step"
start_server 0 1
echo "-- wrk -t1 -c64 -d${secs}s (closed model: as fast as the server answers)"
wrk -t1 -c64 -d"${secs}s" "$url" | grep -E 'Requests/sec|Latency|requests in'
wrk_rps=$(wrk -t1 -c64 -d"${secs}s" "$url" | awk '/Requests\/sec/ {print $2}')
echo "   wrk second run: $wrk_rps req/s"
best=0
best_relaxed=0
printf '%8s %10s %9s %8s %8s %12s  %s\n' target achieved dropped failed lag_p99 svc_p99_ms verdict
for rate in "${rates[@]}"; do
    load "$rate" "$secs" 1000
    achieved=$(field "$out/s.json" achieved_rate)
    scheduled=$(field "$out/s.json" scheduled)
    dropped=$(field "$out/s.json" dropped)
    failed=$(field "$out/s.json" failed)
    lag=$(field "$out/s.json" start_lag.p99_ms)
    svc=$(field "$out/s.json" service_time.p99_ms)
    # strict: nothing dropped or failed, >= 99 % of the target started;
    # relaxed: <= 1 % dropped, nothing failed, >= 98 % started.
    verdict=$(python3 -c "
a, d, f, s, r = $achieved, $dropped, $failed, $scheduled, $rate
print('strict' if d == 0 and f == 0 and a >= 0.99 * r else 'relaxed' if d <= 0.01 * s and f == 0 and a >= 0.98 * r else 'no')")
    printf '%8s %10.1f %9s %8s %8.3f %12.3f  %s\n' "$rate" "$achieved" "$dropped" "$failed" "$lag" "$svc" "$verdict"
    [[ $verdict == strict ]] && best=$rate
    [[ $verdict != no ]] && best_relaxed=$rate
done
ratio() { python3 -c "print(f'{$1 / $wrk_rps:.2f}')"; }
echo "highest sustained rate: strict $best/s (ratio to wrk $(ratio "$best")), relaxed $best_relaxed/s (ratio $(ratio "$best_relaxed")); wrk $wrk_rps req/s"

echo "== 2. start lag at 2,000 iterations/s for ${secs}s"
load 2000 "$secs" 1000
echo "start lag ms: p50 $(field "$out/s.json" start_lag.p50_ms) p99 $(field "$out/s.json" start_lag.p99_ms) p99.9 $(field "$out/s.json" start_lag.p999_ms) max $(field "$out/s.json" start_lag.max_ms); dropped $(field "$out/s.json" dropped)"

echo "== 3. memory with 1,000 VUs busy (server sleeps 1 s per request, 1,000 iterations/s for ${secs}s)"
start_server 1000 2
/usr/bin/time -v "$bin" load --no-progress --url "$url" --stages "1000:${secs}s" --start-rate 1000 \
    --pre-allocated-vus 1000 --max-vus 1000 --format json --summary "$out/s.json" 2>"$out/time.txt" || true
grep -E 'Maximum resident|Elapsed' "$out/time.txt"
echo "vus busy at most $(field "$out/s.json" vus_peak_busy), dropped $(field "$out/s.json" dropped), completed $(field "$out/s.json" completed), failed $(field "$out/s.json" failed)"
