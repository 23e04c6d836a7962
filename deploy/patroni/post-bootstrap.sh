#!/bin/sh
# Patroni's bootstrap.post_bootstrap (deploy/patroni/patroni.yml): runs once, on the
# node that creates the cluster, with a superuser connection URL as its argument.
# Creates the role and database Coreline uses (its password is the Compose secret
# postgres_password, the one in local/database-ha.env), the pgBackRest stanza, and the
# first full backup, which new replicas are then made from.
set -eu

psql --no-psqlrc --set=ON_ERROR_STOP=1 --set=password="$(cat /run/secrets/postgres_password)" \
    "$1" <<'SQL'
CREATE ROLE coreline LOGIN PASSWORD :'password';
CREATE DATABASE coreline OWNER coreline;
SQL

pgbackrest --stanza=coreline stanza-create
# A failed first backup must not fail the bootstrap: the schedule tries again, and
# CorelineBackupFailed says so meanwhile.
/usr/local/bin/coreline-backup full || echo "coreline-post-bootstrap: the first backup failed" >&2
