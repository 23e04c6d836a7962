"""A throwaway PostgreSQL 15 that archives its WAL to a pgBackRest repository, for the
restore drill: full and incremental backups, and point-in-time restores into a fresh
cluster, everything in temporary directories on loopback.

The repository's configuration is written for the cluster it currently serves
(``PgBackRest.serve``); a cluster restored from it takes that place, as it would after
a real disaster, and archives on a timeline of its own.
"""

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

from tests.support.postgres import TemporaryPostgres

STANZA: Final = "coreline"
_SERVER_USER: Final = "postgres"
"""The account the server runs as when the tests run as root (``TemporaryPostgres``):
pgBackRest must run as the same one to read the data directory and write the repository."""


@dataclass(frozen=True, slots=True)
class BackupSet:
    """One backup in the repository, as ``pgbackrest info`` describes it."""

    label: str
    kind: str
    """``full``, ``diff`` or ``incr``."""
    references: tuple[str, ...]
    """The earlier backups an incremental or differential one needs."""
    stopped_at: datetime


class PgBackRest:
    """pgBackRest's configuration, repository, locks, logs and spool under one
    temporary directory, backing up the cluster it was last told to ``serve``."""

    def __init__(self, stanza: str = STANZA) -> None:
        self.stanza = stanza
        self.root = Path(tempfile.mkdtemp(prefix="coreline-pgbackrest-"))
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            hand_over(self.root)
            self._run_as = ["runuser", "-u", _SERVER_USER, "--"]

    @property
    def archive_command(self) -> str:
        """What the served cluster runs for each finished WAL segment."""
        return f"pgbackrest --config-path={self.root} --stanza={self.stanza} archive-push %p"

    def serve(self, server: TemporaryPostgres) -> None:
        """Point the stanza at ``server`` (data directory, port and socket directory)."""
        (self.root / "pgbackrest.conf").write_text(
            "[global]\n"
            f"repo1-path={self.root / 'repo'}\n"
            "repo1-retention-full=2\n"
            f"lock-path={self.root / 'lock'}\n"
            f"log-path={self.root / 'log'}\n"
            f"spool-path={self.root / 'spool'}\n"
            "start-fast=y\n"
            "compress-type=lz4\n"
            "log-level-console=info\n"
            "log-level-file=off\n"
            # `check` waits this long for the segment it switched to be archived.
            "archive-timeout=30\n"
            f"\n[{self.stanza}]\n"
            f"pg1-path={server.data_dir}\n"
            f"pg1-port={server.port}\n"
            # TemporaryPostgres puts its socket beside the data directory (-k).
            f"pg1-socket-path={server.data_dir.parent}\n"
            "pg1-user=postgres\n"
        )

    def run(self, *command: str, **environment: str) -> subprocess.CompletedProcess[str]:
        """``command`` as the server's account, with this repository's configuration and
        stanza in ``PGBACKREST_*`` variables (what pgBackRest reads besides its file)
        and ``environment`` added; never raises on failure."""
        settings = {
            "PGBACKREST_CONFIG_PATH": str(self.root),
            "PGBACKREST_STANZA": self.stanza,
            **environment,
        }
        assignments = [f"{name}={value}" for name, value in settings.items()]
        return subprocess.run(
            [*self._run_as, "env", *assignments, *command],
            capture_output=True, text=True, check=False, timeout=180,
        )  # fmt: skip

    def pgbackrest(self, *args: str) -> str:
        """``pgbackrest ARGS``; its console output, or an error naming what failed.

        The configuration and stanza are given as options too: a restore writes the
        options it was given into the restored cluster's ``restore_command``."""
        options = (f"--config-path={self.root}", f"--stanza={self.stanza}")
        done = self.run("pgbackrest", *options, *args)
        if done.returncode != 0:
            raise AssertionError(f"pgbackrest {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout[-3000:]}{done.stderr[-3000:]}")  # fmt: skip
        return done.stdout

    def create_stanza(self) -> None:
        self.pgbackrest("stanza-create")

    def check(self) -> None:
        """``pgbackrest check``: the configuration holds, and the served cluster's
        current WAL segment is switched and archived (so everything committed so far
        is in the repository)."""
        self.pgbackrest("check")

    def backup(self, kind: str) -> BackupSet:
        self.pgbackrest(f"--type={kind}", "backup")
        return self.backups()[-1]

    def backups(self) -> list[BackupSet]:
        """Every backup in the repository, oldest first."""
        (stanza,) = json.loads(self.pgbackrest("info", "--output=json"))
        return [
            BackupSet(
                label=entry["label"],
                kind=entry["type"],
                references=tuple(entry["reference"] or ()),
                stopped_at=datetime.fromtimestamp(entry["timestamp"]["stop"], UTC),
            )
            for entry in stanza["backup"]
        ]

    def restore_to_time(self, target: datetime, into: TemporaryPostgres) -> str:
        """Restore ``into``'s (not yet created) data directory as of ``target``, to be
        promoted once recovery reaches it; pgBackRest picks the newest backup that
        ended before ``target``.  Returns the label of the backup set it restored."""
        into.data_dir.mkdir(mode=0o700)
        if self._run_as:
            hand_over(into.data_dir)
        output = self.pgbackrest(
            "--type=time", f"--target={target.isoformat(sep=' ')}", "--target-action=promote",
            f"--pg1-path={into.data_dir}", "restore",
        )  # fmt: skip
        marker = "restore backup set "
        (line,) = [line for line in output.splitlines() if marker in line]
        return line.split(marker, 1)[1].split(",", 1)[0]

    def destroy(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def hand_over(path: Path) -> None:
    account = pwd.getpwnam(_SERVER_USER)
    os.chown(path, account.pw_uid, account.pw_gid)


def archive_to(server: TemporaryPostgres, repository: PgBackRest) -> None:
    """Make a running ``server`` archive its WAL to ``repository``: the settings go into
    the cluster (``ALTER SYSTEM``), so that its backups, and clusters restored from
    them, carry them too; ``archive_mode`` takes a restart.  Then the stanza is
    created and ``check`` proves a segment reaches the repository."""
    with psycopg.connect(server.url(), autocommit=True) as connection:
        connection.execute("ALTER SYSTEM SET archive_mode = on")
        # A literal, not a parameter: ALTER SYSTEM takes no placeholders.
        command = sql.Literal(repository.archive_command)
        connection.execute(sql.SQL("ALTER SYSTEM SET archive_command = {}").format(command))
    server.stop()
    server.start()
    repository.serve(server)
    repository.create_stanza()
    repository.check()


def wait_promoted(server: TemporaryPostgres, within_s: float = 60.0) -> None:
    """Until a restored ``server`` has reached its recovery target and left recovery."""
    with psycopg.connect(server.url(), autocommit=True) as connection:
        for _ in range(int(within_s * 10)):
            row = connection.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is not None and not row[0]:
                return
            connection.execute("SELECT pg_sleep(0.1)")
    raise AssertionError(f"still in recovery after {within_s} s")


@contextlib.contextmanager
def archiving_postgres() -> Iterator[tuple[TemporaryPostgres, PgBackRest]]:
    """A durable PostgreSQL server archiving to a fresh pgBackRest repository, the
    stanza created and checked; both removed afterwards."""
    repository = PgBackRest()
    server = TemporaryPostgres(durable=True)
    try:
        server.start()
        archive_to(server, repository)
        yield server, repository
    finally:
        server.destroy()
        repository.destroy()
