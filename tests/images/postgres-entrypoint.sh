#!/bin/sh
# Entry point of the locally built PostgreSQL image (Debian's server under the managed default image name).
# Same environment contract as the official image: POSTGRES_USER (default postgres), POSTGRES_PASSWORD (required
# unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default: the user), PGDATA. On an empty PGDATA it runs
# initdb (password auth for TCP clients, trust on the local socket), creates the database and runs
# /docker-entrypoint-initdb.d/*.sh|*.sql; then it execs postgres listening on 0.0.0.0 (PGPORT, default 5432).
# It never switches users: it runs as whoever starts it (the image says uid 70; so does the StatefulSet).
set -eu

if [ "${1:-postgres}" != "${1#-}" ]; then
	set -- postgres "$@"
fi
if [ "$#" -eq 0 ]; then
	set -- postgres
fi
if [ "$1" != "postgres" ]; then
	exec "$@"
fi
shift

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
socket_dir=/var/run/postgresql

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
		echo "postgres-entrypoint: POSTGRES_PASSWORD is empty; set it (or POSTGRES_HOST_AUTH_METHOD=trust)" >&2
		exit 1
	fi
	mkdir -p "$PGDATA"
	chmod 0700 "$PGDATA" 2>/dev/null || true
	pwfile="$(mktemp)"
	trap 'rm -f "$pwfile"' EXIT
	printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
	initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
		--encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-}
	rm -f "$pwfile"
	trap - EXIT
	printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

	# A private server (no TCP) for the setup steps.
	pg_ctl --pgdata="$PGDATA" --wait --silent \
		--options="-c listen_addresses='' -c unix_socket_directories=$socket_dir" start
	psql_setup() { psql -v ON_ERROR_STOP=1 --no-psqlrc --host="$socket_dir" --username="$POSTGRES_USER" "$@"; }
	if [ "$POSTGRES_DB" != postgres ]; then
		exists="$(psql_setup --dbname=postgres -tA --set db="$POSTGRES_DB" \
			-c "SELECT 1 FROM pg_database WHERE datname = :'db'" </dev/null || true)"
		if [ "$exists" != 1 ]; then
			psql_setup --dbname=postgres --set db="$POSTGRES_DB" <<-'SQL'
				CREATE DATABASE :"db";
			SQL
		fi
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh) echo "postgres-entrypoint: running $f"; . "$f" ;;
		*.sql) echo "postgres-entrypoint: running $f"; psql_setup --dbname="$POSTGRES_DB" -f "$f" ;;
		*) ;;
		esac
	done
	pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop
	echo "postgres-entrypoint: initialised $PGDATA (database $POSTGRES_DB, user $POSTGRES_USER)"
fi

exec postgres -c listen_addresses='*' -c unix_socket_directories="$socket_dir" "$@"
