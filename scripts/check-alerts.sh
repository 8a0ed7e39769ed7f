#!/usr/bin/env bash
# Validates the Prometheus alert rules and runs their unit tests, and checks the
# shipped scrape configuration (ops/prometheus/prometheus.yml).
#
#   scripts/check-alerts.sh
#
# Installs Debian/Ubuntu's `prometheus` package (which ships promtool) when
# promtool is not on PATH, without starting the prometheus service. Exits
# non-zero if the rules do not parse or any rule test fails. Called from CI.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

rules="ops/prometheus/alerts.yml"
tests="alerts.test.yml" # relative to ops/prometheus, where its rule_files resolve

install_promtool() {
  local sudo=""
  if [[ "$(id -u)" -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "check-alerts: promtool is missing and installing it needs root (no sudo found)" >&2
      exit 1
    fi
    sudo="sudo"
  fi

  # Only promtool is needed: stop the package's postinst from starting the
  # prometheus daemon (policy-rc.d exit 101 = "action forbidden"), unless the
  # machine already has its own policy.
  local policy="/usr/sbin/policy-rc.d"
  local own_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    own_policy=1
    # shellcheck disable=SC2064 # expand now: $sudo and $policy are fixed
    trap "$sudo rm -f '$policy'" EXIT
  fi

  echo "check-alerts: promtool not found; installing the prometheus package" >&2
  $sudo apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus

  if [[ "$own_policy" -eq 1 ]]; then
    $sudo rm -f "$policy"
    trap - EXIT
  fi
}

if ! command -v promtool >/dev/null 2>&1; then
  install_promtool
fi

promtool --version | head -n 1

echo "==> promtool check rules $rules"
promtool check rules "$rules"

echo "==> promtool test rules ops/prometheus/$tests"
(cd ops/prometheus && promtool test rules "$tests")

echo "==> promtool check config ops/prometheus/prometheus.yml"
(cd ops/prometheus && promtool check config prometheus.yml)

echo "check-alerts: OK"
