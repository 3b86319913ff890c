#!/usr/bin/env bash
# Fetch real QEMU release trees (5.2, 7.2, 10.0) from Debian's source packages.
#
# The trees are unpacked into a cache outside the repository:
#   ${VMSTATE_GUARD_QEMU_CACHE:-$HOME/.cache/vmstate-guard/qemu}/qemu-<version>/
# and the script prints `export VMSTATE_GUARD_QEMU_<MAJOR>=...` lines for the tests.
# Needs root (it adds a deb-src entry and runs apt-get update). Safe to rerun:
# a tree already unpacked is kept.
set -euo pipefail

cache=${VMSTATE_GUARD_QEMU_CACHE:-$HOME/.cache/vmstate-guard/qemu}
# bullseye ships QEMU 5.2, bookworm 7.2, trixie 10.0.
suites=(bullseye bookworm trixie)
releases=(5.2 7.2 10.0)

# Reuse the mirror this machine already uses for binary packages.
mirror=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
if [ -z "$mirror" ]; then
    echo "fetch-qemu-trees: no Debian mirror found in /etc/apt sources" >&2
    exit 2
fi

src_list=/etc/apt/sources.list.d/vmstate-guard-src.sources
if [ ! -f "$src_list" ]; then
    cat >"$src_list" <<SRC
Types: deb-src
URIs: $mirror
Suites: ${suites[*]}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update -qq
fi

mkdir -p "$cache"
for release in "${releases[@]}"; do
    # Debian version of that release, e.g. "1:10.0.13+ds-0+deb13u1" for 10.0.
    version=$(apt-cache showsrc qemu 2>/dev/null |
        awk -v r="$release" '/^Version:/ {v = $2; u = v; sub(/^[0-9]+:/, "", u);
             if (index(u, r) == 1 && substr(u, length(r) + 1, 1) ~ /[.+~-]/) print v}' |
        sort -V | tail -n 1)
    if [ -z "$version" ]; then
        echo "fetch-qemu-trees: no qemu $release source package (looked in ${suites[*]})" >&2
        exit 2
    fi
    upstream=${version#*:}
    upstream=${upstream%%+*}
    upstream=${upstream%%-*}
    tree="$cache/qemu-$upstream"
    if [ ! -f "$tree/VERSION" ]; then
        work=$(mktemp -d "$cache/download.XXXXXX")
        (cd "$work" && apt-get source --download-only -qq "qemu=$version" >/dev/null)
        orig=$(ls "$work"/qemu_*.orig.tar.* | head -n 1)
        rm -rf "$tree.partial" && mkdir -p "$tree.partial"
        tar -xf "$orig" -C "$tree.partial" --strip-components=1
        rm -rf "$work" "$tree" && mv "$tree.partial" "$tree"
    fi
    major=${upstream%%.*}
    echo "export VMSTATE_GUARD_QEMU_${major}=$tree"
done
