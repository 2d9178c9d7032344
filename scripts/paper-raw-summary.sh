#!/usr/bin/env bash
# Regenerates assets/paper-raw-summary.json and assets/paper-raw-means/: our own `aggregate` over the 98 pairs the paper
# published (../shared/reference/paper-raw/paired_metric_exports, 20 MB, not in the repository).
# The experiment report shows these numbers beside the paper's published headline.
set -euo pipefail
cd "$(dirname "$0")/.."
raw=${1:-../shared/reference/paper-raw/paired_metric_exports}
[[ -d $raw ]] || { echo "usage: $0 [PATH/TO/paired_metric_exports] (not found: $raw)" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo run --quiet --release -- aggregate --runs "$raw" --out "$out/agg"
cp "$out/agg/summary.json" assets/paper-raw-summary.json
# The mean curves the report's Fidelity section compares a run with.
for role in baseline scaled; do
  mkdir -p "assets/paper-raw-means/$role"
  for m in System_Runtime_ThreadPool_Queue_Length Busy_Worker_Threads Process_Number_of_Threads \
           Request_Duration Average_HTTP_Request_Duration; do
    cp "$out/agg/$role/${m}_export_mean_values.csv" "assets/paper-raw-means/$role/"
  done
done
echo "wrote assets/paper-raw-summary.json and assets/paper-raw-means/"
