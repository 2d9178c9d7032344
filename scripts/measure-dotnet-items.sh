#!/usr/bin/env bash
# Thread-pool work items the .NET workload completes per request (docs/dotnet.md): its
# dotnet_thread_pool_work_item_count_total before and after 100 requests on one kept-alive
# connection, and 20 requests each on a new connection, less what a /metrics read itself costs.
# Blocking 0 ms, so no request waits for a thread. STARVATION: the binary (target/release/…).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${STARVATION:-target/release/starvation}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve-dotnet -- --listen "127.0.0.1:$port" --block-ms 0 >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
until curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do sleep 0.05; done
items() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^dotnet_thread_pool_work_item_count_total/ {print $2}'; }
url="http://127.0.0.1:$port/test-threadpool"
for round in 1 2 3; do
    a=$(items); b=$(items); read_cost=$((b - a))
    c=$(items)
    args=(); for _ in $(seq 100); do args+=(-o /dev/null "$url"); done
    curl -s "${args[@]}"
    d=$(items)
    for _ in $(seq 20); do curl -s -o /dev/null "$url"; done
    e=$(items)
    awk -v k=$((d - c - read_cost)) -v n=$((e - d - read_cost)) -v r=$round 'BEGIN {
        printf "round %d: %.2f items per kept-alive request, %.2f per request on a new connection\n", r, k / 100, n / 20 }'
done
