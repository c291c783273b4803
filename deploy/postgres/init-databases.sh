#!/usr/bin/env bash
# One database per service, owned by POSTGRES_USER. The postgres image runs this once, when
# its data volume is empty (it is mounted in /docker-entrypoint-initdb.d/ by compose.yaml).
# Safe to run again by hand (an existing database is left as it is), e.g. to add one:
#   docker compose -f deploy/compose.yaml exec postgres bash /docker-entrypoint-initdb.d/init-databases.sh
#
# FPH_DATABASES overrides the list (space-separated); the default is the four services'.
set -euo pipefail

databases="${FPH_DATABASES:-intake review funding indicators}"
owner="${POSTGRES_USER:?POSTGRES_USER is not set}"

for db in $databases; do
    if [[ ! "$db" =~ ^[a-z][a-z0-9_]*$ ]]; then
        echo "init-databases: invalid database name '$db'" >&2
        exit 1
    fi
    exists="$(psql -v ON_ERROR_STOP=1 --username "$owner" --dbname "${POSTGRES_DB:-$owner}" \
        --no-align --tuples-only --command "SELECT 1 FROM pg_database WHERE datname = '$db'")"
    if [[ "$exists" == "1" ]]; then
        echo "init-databases: database $db exists"
    else
        psql -v ON_ERROR_STOP=1 --username "$owner" --dbname "${POSTGRES_DB:-$owner}" \
            --command "CREATE DATABASE \"$db\" OWNER \"$owner\""
        echo "init-databases: database $db created"
    fi
done
