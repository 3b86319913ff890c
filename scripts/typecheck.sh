#!/usr/bin/env bash
# Type-check the package as it installs: setuptools maps rules/ and reports/
# to analyzer.rules and analyzer.reports, which mypy cannot see in the source
# layout, so check a staged copy.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
python -m pip install -q --no-deps --target "$stage" .
MYPYPATH="$stage" mypy --config-file pyproject.toml -p analyzer
