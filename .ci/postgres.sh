#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for the tests (run as root).
#   bash .ci/postgres.sh start   # installs the server if missing, starts it, prints the URL
#   bash .ci/postgres.sh stop    # stops it and deletes its files
# TOWER_IDENTITY_PG_PORT and TOWER_IDENTITY_PG_DIR choose another port and
# directory (to run several clusters side by side).
#
# The server accepts TLS (ssl = on) with a certificate for 127.0.0.1 and
# localhost issued by a CA generated here with openssl; ssl_ca_file names
# that CA, so the TLS tests find it with `SHOW ssl_ca_file`. Connections
# without TLS are accepted too.
set -euo pipefail
PORT=${TOWER_IDENTITY_PG_PORT:-54329}
DIR=${TOWER_IDENTITY_PG_DIR:-/tmp/tower-identity-pg}

bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# A CA and a server certificate signed by it, in $1 (owned by postgres).
certificates() {
  local dir=$1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=tower-identity test CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=127.0.0.1" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
  rm -f "$dir/ca.key" "$dir/ca.srl" "$dir/server.csr" "$dir/server.ext"
  chown postgres:postgres "$dir"/ca.crt "$dir"/server.*
  chmod 600 "$dir/server.key"
  chmod 644 "$dir/ca.crt"
}

case "${1:-start}" in
start)
  if [ -z "$(bin_dir)" ] || [ ! -x "$(bin_dir)/initdb" ]; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
  fi
  if ! command -v openssl >/dev/null 2>&1; then
    # The test certificates (and the TLS test's own wrong CA) are made with it.
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >&2
  fi
  BIN=$(bin_dir)
  if [ -f "$DIR/data/postmaster.pid" ]; then
    runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >&2 || true
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"
  chown postgres:postgres "$DIR"
  chmod 755 "$DIR"
  certificates "$DIR"
  runuser -u postgres -- "$BIN/initdb" -D "$DIR/data" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c max_connections=200 -c ssl=on \
        -c ssl_cert_file=$DIR/server.crt -c ssl_key_file=$DIR/server.key -c ssl_ca_file=$DIR/ca.crt" start >&2
  runuser -u postgres -- psql -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE tower_identity" >&2
  echo "postgres://postgres@127.0.0.1:$PORT/tower_identity"
  ;;
stop)
  BIN=$(bin_dir)
  if [ -n "$BIN" ] && [ -f "$DIR/data/postmaster.pid" ]; then
    runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >&2 || true
  fi
  rm -rf "$DIR"
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
