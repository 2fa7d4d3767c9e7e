#!/usr/bin/env bash
# Installs the interpreters/compilers that tests/it/signing_snippets.rs runs the
# README's signing snippets with (signing/{node,python,go,ruby}), from Debian
# packages. Idempotent: a tool already on PATH is left alone (a newer Node.js
# installed some other way is kept), and apt is only touched when something is
# missing.
set -euo pipefail

# command on PATH -> Debian package that provides it
declare -A PACKAGE=(
    [node]=nodejs
    [python3]=python3
    [go]=golang-go
    [ruby]=ruby
)

missing=()
for tool in node python3 go ruby; do
    if command -v "$tool" >/dev/null 2>&1; then
        echo "install-snippet-toolchains: $tool found at $(command -v "$tool")"
    else
        missing+=("${PACKAGE[$tool]}")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-snippet-toolchains: nothing to install"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-snippet-toolchains: apt-get not found; install ${missing[*]} by hand" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi

echo "install-snippet-toolchains: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

for tool in node python3 go ruby; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "install-snippet-toolchains: $tool still missing after installing ${missing[*]}" >&2
        exit 1
    }
done
echo "install-snippet-toolchains: done"
