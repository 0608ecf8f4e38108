#!/bin/sh
# First start: initialise the cluster with the configured superuser and password, run the
# init scripts, then hand over to postgres. Later starts: just postgres.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

# The marker is written last: a first start that fails halfway is retried from scratch on
# the next start instead of leaving a cluster without its databases.
if [ ! -f "$PGDATA/.initialised" ]; then
    # PGDATA may be a folder below a fresh volume's root (Kubernetes: deploy/k8s/base)
    mkdir -p "$PGDATA" && chmod 700 "$PGDATA"
    find "$PGDATA" -mindepth 1 -delete
    pwfile=$(mktemp)
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$POSTGRES_DB" != "postgres" ]; then
        psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
            -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sql) psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sh) . "$f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    touch "$PGDATA/.initialised"
    echo "postgres-entrypoint: initialised $PGDATA"
fi
trap - EXIT
exec "$@"
