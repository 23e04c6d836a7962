#!/bin/sh
# One pgBackRest backup of Coreline's database, its outcome written for Prometheus
# (node_exporter's textfile collector). deploy/prometheus/alerts.yml raises
# CorelineBackupFailed when the last attempt failed and CorelineBackupStale when no
# backup has succeeded for too long (docs/operations.md, "Backups").
#
#   backup.sh [auto|full|diff|incr]        (default: auto)
#
# auto takes a full backup when the last successful full one is older than
# BACKUP_FULL_EVERY_S or unknown, and an incremental one otherwise.
#
# Environment:
#   PGBACKREST_STANZA     the stanza (coreline)
#   BACKUP_METRICS_DIR    where the .prom files go (/var/lib/coreline-backup-metrics)
#   BACKUP_FULL_EVERY_S   the age at which auto takes a full backup (604800: 7 days)
# Everything else pgBackRest reads from its configuration file or PGBACKREST_*
# variables. Exits with pgBackRest's status.
set -u

stanza=${PGBACKREST_STANZA:-coreline}
metrics_dir=${BACKUP_METRICS_DIR:-/var/lib/coreline-backup-metrics}
full_every_s=${BACKUP_FULL_EVERY_S:-604800}
kind=${1:-auto}

metrics_file() {  # metrics_file TYPE
    echo "$metrics_dir/coreline_backup_${stanza}_$1.prom"
}

last_success() {  # last_success TYPE: epoch seconds of its last success, 0 if none
    value=$(awk '/^coreline_backup_last_success_timestamp_seconds[{ ]/ { print $2 }' \
        "$(metrics_file "$1")" 2>/dev/null)
    echo "${value:-0}"
}

case $kind in
    auto)
        if [ $(($(date +%s) - $(last_success full))) -ge "$full_every_s" ]; then
            kind=full
        else
            kind=incr
        fi
        ;;
    full | diff | incr) ;;
    *)
        echo "backup.sh: unknown backup type: $kind (auto, full, diff or incr)" >&2
        exit 2
        ;;
esac

started=$(date +%s)
pgbackrest --stanza="$stanza" --type="$kind" backup
status=$?
ended=$(date +%s)

if [ "$status" -eq 0 ]; then
    succeeded=1
    success_at=$ended
else
    succeeded=0
    success_at=$(last_success "$kind")  # a failure keeps the last success's time
fi

# Written beside the target and renamed over it: the collector never reads half a file.
mkdir -p "$metrics_dir"
target=$(metrics_file "$kind")
labels="stanza=\"$stanza\",type=\"$kind\""
cat >"$target.$$" <<METRICS
# HELP coreline_backup_last_status Whether the last pgBackRest backup attempt of this type succeeded (1) or failed (0).
# TYPE coreline_backup_last_status gauge
coreline_backup_last_status{$labels} $succeeded
# HELP coreline_backup_last_attempt_timestamp_seconds When the last pgBackRest backup attempt of this type ended.
# TYPE coreline_backup_last_attempt_timestamp_seconds gauge
coreline_backup_last_attempt_timestamp_seconds{$labels} $ended
# HELP coreline_backup_last_success_timestamp_seconds When the last successful pgBackRest backup of this type ended (0: never).
# TYPE coreline_backup_last_success_timestamp_seconds gauge
coreline_backup_last_success_timestamp_seconds{$labels} $success_at
# HELP coreline_backup_last_duration_seconds How long the last pgBackRest backup attempt of this type took.
# TYPE coreline_backup_last_duration_seconds gauge
coreline_backup_last_duration_seconds{$labels} $((ended - started))
METRICS
chmod 0644 "$target.$$"  # node_exporter reads it as another user
mv "$target.$$" "$target"
exit "$status"
