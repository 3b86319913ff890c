#!/usr/bin/env bash
# Fetch the two third-party checkers the report tests use, from the npm registry:
#   - Microsoft's SARIF Multitool (`validate`: the SARIF spec's rules and
#     GitHub code scanning's ingestion rules, independent of our JSON schema),
#     as the self-contained Linux build npm ships (no .NET or Node needed to run it);
#   - axe-core, the accessibility engine the HTML report's browser tests inject.
#
# They are unpacked into a cache outside the repository:
#   ${VMSTATE_GUARD_TOOLS_CACHE:-$HOME/.cache/vmstate-guard/tools}/<package>-<version>/
# and the script prints `export VMSTATE_GUARD_SARIF_MULTITOOL=... VMSTATE_GUARD_AXE=...`
# for the tests. Versions are pinned; safe to rerun (what is unpacked is kept).
set -euo pipefail

cache=${VMSTATE_GUARD_TOOLS_CACHE:-$HOME/.cache/vmstate-guard/tools}
multitool=@microsoft/sarif-multitool-linux@5.7.0
axe=axe-core@4.14.1

fetch() {  # fetch PACKAGE@VERSION DIR: npm pack it and unpack it into DIR
    local spec=$1 dir=$2 scratch
    [ -d "$dir" ] && return 0
    scratch=$(mktemp -d)
    (cd "$scratch" && npm pack --silent "$spec" >/dev/null)
    mkdir -p "$dir.partial"
    tar -xzf "$scratch"/*.tgz -C "$dir.partial" --strip-components=1
    rm -rf "$scratch"
    mv "$dir.partial" "$dir"
}

mkdir -p "$cache"
fetch "$multitool" "$cache/sarif-multitool-linux-5.7.0"
chmod +x "$cache/sarif-multitool-linux-5.7.0/Sarif.Multitool"
fetch "$axe" "$cache/axe-core-4.14.1"
echo "export VMSTATE_GUARD_SARIF_MULTITOOL=$cache/sarif-multitool-linux-5.7.0/Sarif.Multitool"
echo "export VMSTATE_GUARD_AXE=$cache/axe-core-4.14.1/axe.min.js"
