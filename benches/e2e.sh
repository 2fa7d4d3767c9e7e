#!/usr/bin/env bash
# End-to-end throughput: an axum "hello" service, bare and behind
# IdentityVerificationLayer, under wrk. Server pinned to one core, wrk to
# another; traffic to 127.0.0.1 only. Prints requests/s and p99 latency for
# each, and the ratio layer / bare (target >= 0.97).
#
#   bash benches/e2e.sh                     # 5 alternating rounds of 10 s each (about 2.5 min)
#   ROUNDS=1 DURATION=5s bash benches/e2e.sh
#
# Needs two CPUs (SERVER_CPU, WRK_CPU) and wrk (installed with apt-get when
# missing). Everything it starts is stopped on exit; every step is bounded by
# `timeout`.
#
# TODO(identity-proxy): add a third column, the identity proxy binary in front
# of the bare service, once that binary exists.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-5}
PORT=${PORT:-38471}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
HOST=127.0.0.1
URL="http://$HOST:$PORT/"

SERVER_PID=""
WORK=$(mktemp -d)
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
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

echo "== building the e2e server (bench profile)"
timeout 1200 cargo bench --bench e2e_server --no-run
BIN=$(timeout 300 cargo bench --bench e2e_server --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*e2e_server[^"]*"' | tail -1 | cut -d'"' -f4 || true)
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
    BIN=$(ls -t target/release/deps/e2e_server-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
fi
[ -n "$BIN" ] && [ -x "$BIN" ] || { echo "e2e.sh: e2e_server binary not found" >&2; exit 1; }

USER_ID=$("$BIN" user)
SIG=$("$BIN" signature)
# Both servers get the same request, so the request size is equal.
WRK_HEADERS=(-H "x-user-id: $USER_ID" -H "x-identity-signature: $SIG")

# A raw HTTP/1.1 GET over bash's /dev/tcp; prints the status code.
status_of() {
    local extra=$1 status
    exec 3<>"/dev/tcp/$HOST/$PORT"
    printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n' "$HOST" "$extra" >&3
    status=$(timeout 5 head -1 <&3 | cut -d' ' -f2)
    exec 3<&- 3>&-
    echo "$status"
}

start_server() {
    local mode=$1
    taskset -c "$SERVER_CPU" "$BIN" "$mode" "$PORT" >"$WORK/server-$mode.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "e2e.sh: the $mode server exited:" >&2
            cat "$WORK/server-$mode.log" >&2
            exit 1
        fi
        if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "e2e.sh: the $mode server did not listen on $HOST:$PORT within 10 s" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
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

# Runs wrk against the server in `mode`; appends "rps p99_us cpu_us_per_request"
# to $WORK/mode.txt. The server's CPU time per request does not depend on
# whether wrk or the server is the bottleneck.
measure() {
    local mode=$1 out="$WORK/wrk-$1.txt" ok bad
    start_server "$mode"
    # The layer must accept the signed request and refuse an unsigned one.
    ok=$(status_of "x-user-id: $USER_ID"$'\r\n'"x-identity-signature: $SIG"$'\r\n')
    bad=$(status_of "x-user-id: $USER_ID"$'\r\n')
    if [ "$ok" != 200 ] || { [ "$mode" = layer ] && [ "$bad" != 401 ]; }; then
        echo "e2e.sh: $mode server answered $ok (signed) / $bad (unsigned)" >&2
        exit 1
    fi
    taskset -c "$WRK_CPU" timeout 60 wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "${WRK_HEADERS[@]}" "$URL" >/dev/null
    local ticks_before ticks_after
    ticks_before=$(cpu_ticks "$SERVER_PID")
    taskset -c "$WRK_CPU" timeout 120 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "${WRK_HEADERS[@]}" "$URL" >"$out"
    ticks_after=$(cpu_ticks "$SERVER_PID")
    stop_server
    if grep -q "Non-2xx" "$out"; then
        echo "e2e.sh: $mode: wrk saw non-2xx responses:" >&2
        cat "$out" >&2
        exit 1
    fi
    local rps p99 requests cpu
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    requests=$(awk '/requests in/ {print $1}' "$out")
    cpu=$(awk -v t="$((ticks_after - ticks_before))" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
        'BEGIN {printf "%.2f", t / hz * 1000000 / n}')
    echo "$rps $(to_us "$p99") $cpu" >>"$WORK/$mode.txt"
    printf '   %-5s %12s req/s   p99 %-9s server CPU %s us/request\n' "$mode" "$rps" "$p99" "$cpu"
}

median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "== wrk -t1 -c$CONNECTIONS -d$DURATION --latency (server on CPU $SERVER_CPU, wrk on CPU $WRK_CPU), $ROUNDS round(s)"
# Other work on the machine skews the figures: say so.
echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
    echo "-- round $round"
    measure bare
    measure layer
done

bare_rps=$(cut -d' ' -f1 "$WORK/bare.txt" | median)
layer_rps=$(cut -d' ' -f1 "$WORK/layer.txt" | median)
bare_p99=$(cut -d' ' -f2 "$WORK/bare.txt" | median)
layer_p99=$(cut -d' ' -f2 "$WORK/layer.txt" | median)
bare_cpu=$(cut -d' ' -f3 "$WORK/bare.txt" | median)
layer_cpu=$(cut -d' ' -f3 "$WORK/layer.txt" | median)
ratio=$(awk -v l="$layer_rps" -v b="$bare_rps" 'BEGIN {printf "%.3f", l / b}')
met=$(awk -v r="$ratio" 'BEGIN {print (r >= 0.97) ? "yes" : "NO"}')

echo
echo "| service (median of $ROUNDS) | requests/s | p99 (us) | server CPU per request (us) |"
echo "| --- | ---: | ---: | ---: |"
printf '| axum hello | %.0f | %s | %s |\n' "$bare_rps" "$bare_p99" "$bare_cpu"
printf '| axum hello + IdentityVerificationLayer | %.0f | %s | %s |\n' "$layer_rps" "$layer_p99" "$layer_cpu"
echo "| identity proxy in front of axum hello | (added when the proxy binary exists) | | |"
echo
echo "ratio layer / bare (requests/s): $ratio (target >= 0.97: $met)"
awk -v l="$layer_cpu" -v b="$bare_cpu" 'BEGIN {printf "server CPU per request: +%.2f us with the layer (x%.3f)\n", l - b, l / b}'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
