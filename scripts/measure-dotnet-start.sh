#!/usr/bin/env bash
# Time to build and start one replica, until it answers /healthz, then stop it: for farm-bench,
# e.g. `farm-bench -n 10 -- scripts/measure-dotnet-start.sh dotnet-warm --vs
# 'scripts/measure-dotnet-start.sh model'` (docs/dotnet.md quotes the medians).
#   dotnet-cold  the .NET workload with an empty cache: mcs compiles it first
#   dotnet-warm  the .NET workload, already built (the cache of $XDG_CACHE_HOME)
#   model        `starvation serve`, the Rust model
# STARVATION (default target/release/starvation) is the binary to time.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${STARVATION:-target/release/starvation}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
case "${1:-}" in
dotnet-cold) XDG_CACHE_HOME=$tmp/cache "$bin" serve-dotnet -- --listen "127.0.0.1:$port" >/dev/null 2>&1 & ;;
dotnet-warm) "$bin" serve-dotnet -- --listen "127.0.0.1:$port" >/dev/null 2>&1 & ;;
model) "$bin" serve --listen "127.0.0.1:$port" --data-dir "$tmp/data" >/dev/null 2>&1 & ;;
*) echo "usage: $0 dotnet-cold|dotnet-warm|model" >&2; exit 2 ;;
esac
pid=$!
for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "the replica exited before answering" >&2; exit 1; }
    sleep 0.01
done
curl -fs "http://127.0.0.1:$port/healthz" >/dev/null
kill -TERM "$pid"
wait "$pid"
