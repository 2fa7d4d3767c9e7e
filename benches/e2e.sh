#!/usr/bin/env bash
# End-to-end throughput under wrk, traffic to 127.0.0.1 only, four services:
#
#   bare            an axum "hello" service                       (e2e_server bare)
#   layer           the same behind IdentityVerificationLayer      (e2e_server layer)
#   head-only       the same behind its head_only() form, which    (e2e_server head-only)
#                   keeps axum's body types
#   plain-proxy     a plain hyper-util reverse proxy in front of   (e2e_server plain-proxy)
#                   the bare service
#   identity-proxy  the workspace's identity-proxy binary in front (package identity-proxy,
#                   of the bare service, verifying the same header  release build)
#                   HMAC (required mode, default settings otherwise:
#                   info logging, no admin listener, so no metrics
#                   recorder is installed)
#
# Prints requests/s, p99 latency and the measured process's CPU time per
# request for each, the ratios layer / bare and head-only / bare (target
# >= 0.95) and the ratio
# identity-proxy / plain-proxy (target >= 0.95), both as ratios of the
# medians, and the same ratios round by round (the two services of a pair
# run one after the other in each round, so a slow drift of the machine
# moves both).
#
# CPUs: the measured process always runs on SERVER_CPU (the server for bare
# and layer, the proxy for the two proxies) and wrk on WRK_CPU. The proxies'
# upstream (the bare server) runs on WRK_CPU too, next to wrk: the same
# arrangement for both proxies, so their ratio is fair, and the proxy keeps a
# core of its own. When the proxy is not the bottleneck (wrk and the upstream
# share a core), requests/s understate its cost; its CPU time per request
# (from /proc/<pid>/stat) does not depend on which side saturates. Every
# server and proxy runs a tokio runtime with one worker thread
# (TOKIO_WORKER_THREADS=1 for identity-proxy).
#
#   bash benches/e2e.sh                     # 5 alternating rounds of 10 s each (about 5 min)
#   ROUNDS=1 DURATION=5s bash benches/e2e.sh
#
# Needs two CPUs (SERVER_CPU, WRK_CPU) and wrk (installed with apt-get when
# missing). Everything it starts is stopped on exit; every step is bounded by
# `timeout` (servers and proxies by SERVER_TIMEOUT seconds each).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-5}
PORT=${PORT:-38471}
UPSTREAM_PORT=${UPSTREAM_PORT:-$((PORT + 1))}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
SERVER_TIMEOUT=${SERVER_TIMEOUT:-600}
HOST=127.0.0.1
URL="http://$HOST:$PORT/"
MODES=(bare layer head-only plain-proxy identity-proxy)

# Servers run as `timeout ... <server>`: *_PID is the timeout process (it
# passes SIGTERM on to the server), *_CHILD the server itself.
SERVER_PID=""
SERVER_CHILD=""
UPSTREAM_PID=""
WORK=$(mktemp -d)

# Stops a process started by this script (by its pid), waiting at most 10 s.
stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop_pid "$SERVER_PID"
    stop_pid "$UPSTREAM_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(nproc)" -lt 2 ]; then
    echo "e2e.sh: needs at least 2 CPUs (server and wrk on separate cores)" >&2
    exit 1
fi

if ! command -v wrk >/dev/null 2>&1; then
    echo "== installing wrk"
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq wrk >/dev/null
fi

# The path of the executable cargo built for `$@` (a bench or a binary).
executable() {
    timeout 300 cargo "$@" --message-format=json 2>/dev/null |
        grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | grep -v '^$' | tail -1 || true
}

echo "== building the e2e server (bench profile)"
timeout 1200 cargo bench --bench e2e_server --no-run
BIN=$(executable bench --bench e2e_server --no-run)
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
    BIN=$(ls -t target/release/deps/e2e_server-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
fi
[ -n "$BIN" ] && [ -x "$BIN" ] || { echo "e2e.sh: e2e_server binary not found" >&2; exit 1; }

echo "== building identity-proxy (release, package identity-proxy)"
timeout 1800 cargo build --release -p identity-proxy --bin identity-proxy
PROXY_BIN=$(executable build --release -p identity-proxy --bin identity-proxy)
[ -n "$PROXY_BIN" ] && [ -x "$PROXY_BIN" ] || PROXY_BIN=target/release/identity-proxy
[ -x "$PROXY_BIN" ] || { echo "e2e.sh: identity-proxy binary not found" >&2; exit 1; }

USER_ID=$("$BIN" user)
SIG=$("$BIN" signature)
IDENTITY_SECRET=$("$BIN" secret)
# The same signature with its last hex digit changed.
if [ "${SIG: -1}" = 0 ]; then FORGED="${SIG%?}1"; else FORGED="${SIG%?}0"; fi
# Every service gets the same request, so the request size is equal.
WRK_HEADERS=(-H "x-user-id: $USER_ID" -H "x-identity-signature: $SIG")

# identity-proxy: one tenant-less key, HMAC-SHA256 over x-user-id, the
# secret from the environment (never written to the file).
PROXY_CONFIG="$WORK/identity-proxy.toml"
cat >"$PROXY_CONFIG" <<TOML
listen = "$HOST:$PORT"
upstream = "http://$HOST:$UPSTREAM_PORT"
mode = "required"
shutdown_grace_secs = 1

[[tenants]]
[[tenants.keys]]
scheme = "hmac"
over = "user_id"
secret_env = "E2E_IDENTITY_SECRET"
TOML

# A raw HTTP/1.1 GET over bash's /dev/tcp; prints the status code.
status_of() {
    local extra=$1 status
    exec 3<>"/dev/tcp/$HOST/$PORT"
    printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n' "$HOST" "$extra" >&3
    status=$(timeout 5 head -1 <&3 | cut -d' ' -f2)
    exec 3<&- 3>&-
    echo "$status"
}

# Waits until `pid` (a `timeout` wrapper) listens on `port`; prints the
# server's pid (the wrapper's only child once the server listens).
wait_listening() {
    local what=$1 pid=$2 port=$3 log=$4 child
    for _ in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "e2e.sh: the $what exited:" >&2
            cat "$log" >&2
            exit 1
        fi
        if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
            child=$(pgrep -P "$pid" || true)
            if [ "$(echo "$child" | wc -w)" != 1 ]; then
                echo "e2e.sh: the $what: expected one server process under $pid, found: $child" >&2
                exit 1
            fi
            echo "$child"
            return 0
        fi
        sleep 0.1
    done
    echo "e2e.sh: the $what did not listen on $HOST:$port within 10 s" >&2
    cat "$log" >&2
    exit 1
}

start_upstream() {
    local log="$WORK/upstream.log"
    taskset -c "$WRK_CPU" timeout -k 5 "$SERVER_TIMEOUT" "$BIN" bare "$UPSTREAM_PORT" >"$log" 2>&1 &
    UPSTREAM_PID=$!
    wait_listening "upstream (bare) server" "$UPSTREAM_PID" "$UPSTREAM_PORT" "$log" >/dev/null
}

start_server() {
    local mode=$1 log="$WORK/server-$1.log"
    case "$mode" in
    bare | layer | head-only)
        taskset -c "$SERVER_CPU" timeout -k 5 "$SERVER_TIMEOUT" "$BIN" "$mode" "$PORT" >"$log" 2>&1 &
        ;;
    plain-proxy)
        start_upstream
        taskset -c "$SERVER_CPU" timeout -k 5 "$SERVER_TIMEOUT" \
            "$BIN" plain-proxy "$PORT" "$UPSTREAM_PORT" >"$log" 2>&1 &
        ;;
    identity-proxy)
        start_upstream
        E2E_IDENTITY_SECRET="$IDENTITY_SECRET" TOKIO_WORKER_THREADS=1 RUST_LOG=info \
            taskset -c "$SERVER_CPU" timeout -k 5 "$SERVER_TIMEOUT" \
            "$PROXY_BIN" --config "$PROXY_CONFIG" >"$log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    SERVER_CHILD=$(wait_listening "$mode server" "$SERVER_PID" "$PORT" "$log")
}

stop_servers() {
    stop_pid "$SERVER_PID"
    stop_pid "$UPSTREAM_PID"
    SERVER_PID=""
    SERVER_CHILD=""
    UPSTREAM_PID=""
}

# wrk's latency ("1.23ms", "850.00us", "1.01s") in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") f = 1; else if (u == "ms") f = 1000; else if (u == "s") f = 1000000; else if (u == "m") f = 60000000; else f = 0
        printf "%.0f", n * f
    }'
}

# CPU time (user + system, all threads) the process has used, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Runs wrk against the service in `mode`; appends "rps p99_us cpu_us_per_request"
# to $WORK/mode.txt. The CPU time per request is the measured process's (the
# server, or the proxy without its upstream); it does not depend on whether
# wrk or the service is the bottleneck.
measure() {
    local mode=$1 out="$WORK/wrk-$1.txt" ok bad forged
    start_server "$mode"
    # A signed request goes through; where identities are verified, an
    # unsigned and a forged one are refused.
    ok=$(status_of "x-user-id: $USER_ID"$'\r\n'"x-identity-signature: $SIG"$'\r\n')
    bad=$(status_of "x-user-id: $USER_ID"$'\r\n')
    forged=$(status_of "x-user-id: $USER_ID"$'\r\n'"x-identity-signature: $FORGED"$'\r\n')
    if [ "$ok" != 200 ] || { [[ "$mode" = layer || "$mode" = identity-proxy ]] && [[ "$bad" != 401 || "$forged" != 401 ]]; }; then
        echo "e2e.sh: $mode answered $ok (signed) / $bad (unsigned) / $forged (forged)" >&2
        exit 1
    fi
    taskset -c "$WRK_CPU" timeout 60 wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "${WRK_HEADERS[@]}" "$URL" >/dev/null
    local ticks_before ticks_after
    ticks_before=$(cpu_ticks "$SERVER_CHILD")
    taskset -c "$WRK_CPU" timeout 120 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "${WRK_HEADERS[@]}" "$URL" >"$out"
    ticks_after=$(cpu_ticks "$SERVER_CHILD")
    stop_servers
    if grep -q "Non-2xx" "$out"; then
        echo "e2e.sh: $mode: wrk saw non-2xx responses:" >&2
        cat "$out" >&2
        exit 1
    fi
    if grep -q "Socket errors" "$out"; then
        echo "   note: $mode: wrk $(grep "Socket errors" "$out" | sed 's/^ *//')"
    fi
    local rps p99 requests cpu
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    requests=$(awk '/requests in/ {print $1}' "$out")
    cpu=$(awk -v t="$((ticks_after - ticks_before))" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
        'BEGIN {printf "%.2f", t / hz * 1000000 / n}')
    echo "$rps $(to_us "$p99") $cpu" >>"$WORK/$mode.txt"
    printf '   %-14s %12s req/s   p99 %-9s CPU %s us/request\n' "$mode" "$rps" "$p99" "$cpu"
}

median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "== wrk -t1 -c$CONNECTIONS -d$DURATION --latency, $ROUNDS round(s)"
echo "   server / proxy on CPU $SERVER_CPU; wrk and the proxies' upstream on CPU $WRK_CPU"
# Other work on the machine skews the figures: say so.
echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
    echo "-- round $round"
    for mode in "${MODES[@]}"; do
        measure "$mode"
    done
done

declare -A RPS P99 CPU
for mode in "${MODES[@]}"; do
    RPS[$mode]=$(cut -d' ' -f1 "$WORK/$mode.txt" | median)
    P99[$mode]=$(cut -d' ' -f2 "$WORK/$mode.txt" | median)
    CPU[$mode]=$(cut -d' ' -f3 "$WORK/$mode.txt" | median)
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
at_least() { awk -v r="$1" -v t="$2" 'BEGIN {print (r >= t) ? "yes" : "NO"}'; }
layer_ratio=$(ratio "${RPS[layer]}" "${RPS[bare]}")
head_only_ratio=$(ratio "${RPS[head-only]}" "${RPS[bare]}")
proxy_ratio=$(ratio "${RPS[identity-proxy]}" "${RPS[plain-proxy]}")

row() { printf '| %s | %.0f | %s | %s |\n' "$1" "${RPS[$2]}" "${P99[$2]}" "${CPU[$2]}"; }
echo
echo "| service (median of $ROUNDS) | requests/s | p99 (us) | CPU per request (us) |"
echo "| --- | ---: | ---: | ---: |"
row "axum hello" bare
row "axum hello + IdentityVerificationLayer" layer
row "axum hello + IdentityVerificationLayer::head_only" head-only
row "plain hyper-util proxy in front of axum hello" plain-proxy
row "identity-proxy in front of axum hello" identity-proxy
echo "(CPU per request: the server's, or the proxy's without its upstream)"
echo
# "r1 r2 ... (median m)": the requests/s of mode $1 over those of mode $2, round by round.
per_round() {
    paste -d' ' "$WORK/$1.txt" "$WORK/$2.txt" | awk '{printf "%.3f\n", $1 / $4}' >"$WORK/ratios"
    printf '%s (median %s)' "$(tr '\n' ' ' <"$WORK/ratios" | sed 's/ $//')" "$(median <"$WORK/ratios")"
}
echo "ratio layer / bare (requests/s): $layer_ratio (target >= 0.95: $(at_least "$layer_ratio" 0.95))"
echo "  round by round: $(per_round layer bare)"
echo "ratio head-only / bare (requests/s): $head_only_ratio (target >= 0.95: $(at_least "$head_only_ratio" 0.95))"
echo "  round by round: $(per_round head-only bare)"
echo "ratio identity-proxy / plain proxy (requests/s): $proxy_ratio (target >= 0.95: $(at_least "$proxy_ratio" 0.95))"
echo "  round by round: $(per_round identity-proxy plain-proxy)"
awk -v l="${CPU[layer]}" -v b="${CPU[bare]}" 'BEGIN {printf "server CPU per request: +%.2f us with the layer (x%.3f)\n", l - b, l / b}'
awk -v l="${CPU[head-only]}" -v b="${CPU[bare]}" 'BEGIN {printf "server CPU per request: +%.2f us with the head-only layer (x%.3f)\n", l - b, l / b}'
awk -v l="${CPU[identity-proxy]}" -v b="${CPU[plain-proxy]}" \
    'BEGIN {printf "proxy CPU per request: +%.2f us in identity-proxy over the plain proxy (x%.3f)\n", l - b, l / b}'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
