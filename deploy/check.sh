#!/usr/bin/env bash
# Static checks of everything under deploy/ (run by .ci/run): Prometheus config and rules,
# the rules' unit tests, the Alertmanager config.
set -euo pipefail
cd "$(dirname "$0")"
echo "==> promtool check config / rules / test rules"
promtool check config prometheus/prometheus.yml
promtool check rules prometheus/alert_rules.yml
promtool test rules prometheus/alert_rules_test.yml
echo "==> amtool check-config"
amtool check-config alertmanager/alertmanager.yml
