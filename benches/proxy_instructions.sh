#!/usr/bin/env bash
# Instructions per forwarded request: identity-proxy against the plain
# hyper-util proxy of benches/e2e_server.rs, counted by callgrind, which the
# VM's noise does not move (wrk's requests/s in benches/e2e.sh do move).
#
# Each proxy runs under `valgrind --tool=callgrind` in front of the bare
# axum hello server, on 127.0.0.1 only, and forwards N_SMALL and then N_LARGE
# GET requests with the same header HMAC (one keep-alive connection, sent by
# python3's http.client). The difference of the two totals divided by the
# difference of the counts is the cost of one request, without start-up and
# shutdown. SHA-256's block function runs in software under valgrind (no
# SHA-NI), so it is shown apart.
#
#   bash benches/proxy_instructions.sh          # N_SMALL=500 N_LARGE=2500
#
# Needs valgrind (callgrind_annotate) and python3. Every process it starts is
# bounded by `timeout` and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

N_SMALL=${N_SMALL:-500}
N_LARGE=${N_LARGE:-2500}
PORT=${PORT:-39100}
UPSTREAM_PORT=$((PORT + 1))
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in valgrind callgrind_annotate python3; do
    command -v "$tool" >/dev/null || { echo "proxy_instructions: needs $tool" >&2; exit 1; }
done

timeout 1200 cargo bench --bench e2e_server --no-run
timeout 1800 cargo build --release -p identity-proxy --bin identity-proxy
BIN=$(ls -t target/release/deps/e2e_server-* | grep -v '\.d$' | head -1)
PROXY_BIN=target/release/identity-proxy
USER_ID=$("$BIN" user)
SIG=$("$BIN" signature)

cat >"$WORK/identity-proxy.toml" <<TOML
listen = "127.0.0.1:$PORT"
upstream = "http://127.0.0.1:$UPSTREAM_PORT"
mode = "required"
shutdown_grace_secs = 1

[[tenants]]
[[tenants.keys]]
scheme = "hmac"
over = "user_id"
secret_env = "E2E_IDENTITY_SECRET"
TOML

cat >"$WORK/client.py" <<'PY'
import http.client, sys
port, n, user, sig = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for _ in range(n):
    conn.request("GET", "/", headers={"x-user-id": user, "x-identity-signature": sig})
    res = conn.getresponse()
    res.read()
    assert res.status == 200, res.status
PY

wait_port() {
    for _ in $(seq 200); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    echo "proxy_instructions: nothing listens on port $1" >&2
    exit 1
}

timeout 900 "$BIN" bare "$UPSTREAM_PORT" >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$UPSTREAM_PORT"

# Prints "<total> <sha256>" instructions for `n` requests through proxy `mode`.
count() {
    local mode=$1 n=$2 out="$WORK/cg.$1.$2" pid
    if [ "$mode" = plain ]; then
        timeout 600 valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$BIN" plain-proxy "$PORT" "$UPSTREAM_PORT" >/dev/null 2>&1 &
    else
        E2E_IDENTITY_SECRET=$("$BIN" secret) TOKIO_WORKER_THREADS=1 RUST_LOG=info \
            timeout 600 valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$PROXY_BIN" --config "$WORK/identity-proxy.toml" >/dev/null 2>&1 &
    fi
    pid=$!
    wait_port "$PORT"
    python3 "$WORK/client.py" "$PORT" "$n" "$USER_ID" "$SIG"
    # SIGTERM to valgrind's child: callgrind writes its counts on exit.
    pkill -TERM -P "$pid" || true
    wait "$pid" 2>/dev/null || true
    callgrind_annotate "$out" 2>/dev/null | awk '
        /PROGRAM TOTALS/ {gsub(",", "", $1); total = $1}
        /sha2::sha256::soft/ {gsub(",", "", $1); sha += $1}
        END {print total, sha + 0}'
}

per_request() {
    local mode=$1 small large
    small=$(count "$mode" "$N_SMALL")
    large=$(count "$mode" "$N_LARGE")
    awk -v s="$small" -v l="$large" -v n=$((N_LARGE - N_SMALL)) 'BEGIN {
        split(s, a, " "); split(l, b, " ");
        printf "%.0f %.0f\n", (b[1] - a[1]) / n, (b[2] - a[2]) / n }'
}

read -r plain plain_sha <<<"$(per_request plain)"
read -r identity identity_sha <<<"$(per_request identity)"
echo
echo "| proxy | instructions per request | of which SHA-256 (software) | outside SHA-256 |"
echo "| --- | ---: | ---: | ---: |"
echo "| plain hyper-util proxy | $plain | $plain_sha | $((plain - plain_sha)) |"
echo "| identity-proxy | $identity | $identity_sha | $((identity - identity_sha)) |"
awk -v p="$plain" -v ps="$plain_sha" -v i="$identity" -v is="$identity_sha" 'BEGIN {
    printf "identity-proxy outside SHA-256: +%d instructions per request over the plain proxy (x%.3f)\n",
        (i - is) - (p - ps), (i - is) / (p - ps) }'
