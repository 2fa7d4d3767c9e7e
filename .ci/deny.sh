#!/usr/bin/env bash
# cargo-deny: licenses (a permissive allow-list), bans (no wildcard
# requirements; duplicate versions warned), sources (crates.io only), then
# RustSec advisories where the advisory database can be had. See deny.toml.
#
# Advisories: the RustSec database is a git repository on GitHub, which not
# every machine this project runs on can reach (only the package registries
# are). So:
#   1. `cargo deny fetch db` (at most DENY_FETCH_TIMEOUT s, default 120) and,
#      when it succeeds, `cargo deny check advisories`;
#   2. otherwise, when a copy is already in $CARGO_HOME/advisory-dbs/
#      (a git clone of the database at advisory-db-<hash>, the name
#      cargo-deny derives from the URL: advisory-db-3157b0e258782691 for
#      cargo-deny 0.20 and the default URL), the check runs --offline
#      against it and says how old it is;
#   3. otherwise the check is skipped with a message, or fails when
#      DENY_ADVISORIES=require.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

if ! cargo deny --version >/dev/null 2>&1; then
    echo "== installing cargo-deny (compiles for a few minutes)"
    cargo install cargo-deny --locked
fi
cargo deny --version

echo "== cargo deny check licenses bans sources"
cargo deny --workspace --all-features check licenses bans sources

echo "== cargo deny check advisories"
db_dir="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
local_copy() {
    local d
    for d in "$db_dir"/advisory-db-*/; do
        if [ -e "$d/.git" ]; then
            echo "${d%/}"
            return 0
        fi
    done
    return 1
}
if timeout "${DENY_FETCH_TIMEOUT:-120}" cargo deny fetch db; then
    cargo deny --workspace --all-features check advisories
elif copy=$(local_copy); then
    updated=$(git -C "$copy" log -1 --format=%cs 2>/dev/null || echo "unknown")
    echo "the advisory database cannot be fetched; checking against the local copy $copy (last commit $updated)"
    cargo deny --workspace --all-features --offline check advisories
elif [ "${DENY_ADVISORIES:-}" = require ]; then
    echo "error: the RustSec advisory database cannot be fetched and no local copy is in $db_dir" >&2
    exit 1
else
    echo "SKIPPED: cargo deny check advisories: the RustSec advisory database cannot be fetched" \
        "from this machine and no local copy is in $db_dir (licenses, bans and sources were checked)"
fi
