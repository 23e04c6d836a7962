#!/bin/sh
# A Patroni node of deploy/compose.ha.yml: Patroni runs PostgreSQL; beside it, the
# backup schedule. Every node runs the schedule and only the current primary takes
# the backup, so backups follow a switchover or failover by themselves.
#
# BACKUP_INTERVAL_S (86400): time between backups; backup.sh auto makes one full a week
# and incremental ones in between.
set -eu

interval=${BACKUP_INTERVAL_S:-86400}
(
    while sleep "$interval"; do
        if curl -fsS -o /dev/null http://127.0.0.1:8008/primary; then
            /usr/local/bin/coreline-backup auto || true  # reported through its metrics
        fi
    done
) &

exec patroni /etc/patroni/patroni.yml
