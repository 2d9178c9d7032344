#!/usr/bin/env bash
# Static checks of everything under deploy/ (run by .ci/run): Prometheus config and rules (the
# paper's and the ones for an operator's own .NET service), the rules' unit tests, the
# Alertmanager config.
set -euo pipefail
cd "$(dirname "$0")"
echo "==> promtool check config / rules / test rules"
# The scaler's token file exists only in a stack task (a Docker secret): check a copy that points
# at a stand-in, beside the original so the relative rule_files resolve.
token=$(mktemp)
copy=prometheus/.check-prometheus.yml
trap 'rm -f "$token" "$copy"' EXIT
sed "s#/run/secrets/alertapi_token#$token#" prometheus/prometheus.yml >"$copy"
promtool check config "$copy"
promtool check rules prometheus/alert_rules.yml prometheus/alert_rules_dotnet.yml
promtool test rules prometheus/alert_rules_test.yml prometheus/alert_rules_dotnet_test.yml
echo "==> amtool check-config"
amtool check-config alertmanager/alertmanager.yml
echo "==> the stack files, with the Compose tool and docker stack config"
# Config names carry CONFIG_VERSION (required at deploy time); any value checks the files.
export CONFIG_VERSION=check
files=(-f docker-compose.yml -f docker-compose.mongodb.yml -f docker-compose.grafana.yml)
docker-compose "${files[@]}" config -q 2>&1 |
    grep -v "use the 'configs' key, which will be ignored" || true
docker-compose "${files[@]}" config -q
docker stack config -c docker-compose.yml -c docker-compose.mongodb.yml \
    -c docker-compose.grafana.yml >/dev/null
# The .NET workload's override (issue 27.5): the same stack with the .NET service as workload.
docker stack config -c docker-compose.yml -c docker-compose.dotnet.yml |
    grep -q 'image: starvation/dotnet:dev' || { echo "docker-compose.dotnet.yml does not set the .NET image" >&2; exit 1; }
echo "==> safe defaults: only the workload's port published, encrypted overlay, no admin API"
published=$(docker stack config -c docker-compose.yml | grep -E '^ +published:' | tr -d ' ')
[[ $published == "published:5000" ]] || { echo "the stack publishes more than 5000: $published" >&2; exit 1; }
docker stack config -c docker-compose.yml | grep -q 'encrypted: ""' || { echo "the overlay is not encrypted" >&2; exit 1; }
! grep -rn -e '--web.enable-admin-api' -e '--web.enable-lifecycle' docker-compose*.yml docker/ ||
    { echo "Prometheus must not enable its admin/lifecycle API" >&2; exit 1; }
echo "==> terraform files (python-hcl2)"
python3 -c 'import hcl2' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check "python-hcl2==8.1.4"
python3 terraform/check.py
