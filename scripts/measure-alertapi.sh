#!/usr/bin/env bash
# Measurements for `starvation alertapi` (quoted in docs/scaler.md): webhook handling latency
# and sustained webhooks/s on the dedupe path (the same firing alert re-sent, as Alertmanager
# does on retries and repeats), local backend. Needs a release build and wrk. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/starvation
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v wrk >/dev/null || { echo "missing wrk: apt-get install wrk" >&2; exit 1; }
work=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=127.0.0.1:$(port)
: >"$work/out"
"$bin" alertapi --listen "$api" --orchestrator local --default-service webserver \
    --local-listen "127.0.0.1:$(port)" --local-serve-arg="--data-dir=$work/data" >"$work/out" 2>"$work/err" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q listening "$work/out" && break; sleep 0.1; done
body='{"version":"4","status":"firing","receiver":"alertapi","alerts":[{"status":"firing","labels":{"alertname":"ThreadPoolStarvation","service":"webserver"},"annotations":{"value":"31"},"startsAt":"2026-11-22T10:00:00Z","fingerprint":"f1"}]}'
echo "first webhook: $(curl -s -X POST "http://$api/alert" -H 'content-type: application/json' -d "$body")"
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$body'
LUA
echo "== wrk: the same alert re-sent for 10 s (dedupe path, no orchestrator call)"
wrk -t2 -c16 -d10s --latency -s "$work/post.lua" "http://$api/alert" | sed 's/^/    /'
curl -s "http://$api/metrics" | awk '
    /^starvation_webhook_duration_seconds_sum/ { sum = $2 }
    /^starvation_webhook_duration_seconds_count/ { n = $2 }
    /^starvation_webhook_duration_seconds_bucket/ { split($1, a, "\""); b[a[2]] = $2 }
    END {
        printf "    server-side handling: %d webhooks, mean %.1f us\n", n, sum / n * 1e6
        for (le in b) if (b[le] >= n * 0.5 && (p50 == "" || le + 0 < p50 + 0)) p50 = le
        for (le in b) if (b[le] >= n * 0.99 && (p99 == "" || le + 0 < p99 + 0)) p99 = le
        printf "    p50 <= %s s, p99 <= %s s (histogram bucket bounds)\n", p50, p99
    }'
echo "    scale events: $(curl -s "http://$api/metrics" | awk '/^starvation_scale_events_total/ { n += $2 } END { print n + 0 }') (the first webhook only)"
