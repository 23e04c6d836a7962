"""``CORELINE_DATABASE_URL``: which adapter, and how to reach it (DESIGN §10, normative).

A PostgreSQL URL is libpq's own and reaches psycopg untouched.  A highly available
cluster is named either by every node in the authority, which libpq tries in order,
keeping the first that accepts writes::

    postgresql://coreline@pg1:5432,pg2:5432,pg3:5432/coreline?target_session_attrs=read-write

or by the one address of a proxy that follows the primary (HAProxy on Patroni's
health checks).  SQLAlchemy's URL parser takes one host in the authority, so its copy
(``sqlalchemy_url``) names the same hosts in libpq's other spelling, the lists
``?host=pg1,pg2,pg3&port=5432,5432,5432``, which SQLAlchemy hands to psycopg as they
are: every process then reaches the same primary the same way.
"""

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl

from schemas.urls import redact
from services.eventstore.errors import DatabaseUnavailableError, UnsupportedDatabaseUrlError

_CONNECTION_DEFAULTS: Final = {
    # A host that does not answer is passed over in seconds, not after the kernel's
    # minutes of SYN retries: the next host in the list may be the primary.
    "connect_timeout": "5",
    # A primary that vanished without closing its connections (power, network) is
    # noticed by the kernel within about 25 s, so a waiting reader reconnects.
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
}


class Backend(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgresql"


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    backend: Backend
    url: str

    @classmethod
    def parse(cls, url: str) -> "DatabaseUrl":
        if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
            return cls(Backend.SQLITE, url)
        if url.startswith(("postgresql://", "postgres://")):
            parts = _PostgresParts.of(url)
            if len(parts.hosts) > 1 and parts.names_hosts_in_query:
                raise UnsupportedDatabaseUrlError(
                    f"the database URL {redact(url)!r} names hosts both before the database "
                    "name and in its query: name them once"
                )
            return cls(Backend.POSTGRES, url)
        raise UnsupportedDatabaseUrlError(
            f"unsupported database URL {redact(url)!r}: use sqlite:///path/to/file.db or "
            "postgresql://user:password@host:port/dbname (or postgresql:///dbname?host=/socket/dir,"
            " or several hosts: postgresql://user@host1:port1,host2:port2/dbname"
            "?target_session_attrs=read-write)"
        )

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url.removeprefix("sqlite:///"))

    @property
    def sqlalchemy_url(self) -> str:
        """The same database for SQLAlchemy (used by Alembic), through psycopg 3."""
        parts = _PostgresParts.of(self.url)
        if len(parts.hosts) <= 1:
            return f"postgresql+psycopg://{parts.rest}"
        hosts = ",".join(host for host, _ in parts.hosts)
        ports = ",".join(port for _, port in parts.hosts)
        lists = f"host={hosts}" + (f"&port={ports}" if ports.strip(",") else "")
        query = f"{parts.query}&{lists}" if parts.query else lists
        credentials = f"{parts.userinfo}@" if parts.userinfo else ""
        return f"postgresql+psycopg://{credentials}{parts.path}?{query}"

    @property
    def connection_defaults(self) -> dict[str, str]:
        """libpq settings for failing over promptly, where the URL does not set its own."""
        named = {name for name, _ in parse_qsl(_PostgresParts.of(self.url).query)}
        return {name: value for name, value in _CONNECTION_DEFAULTS.items() if name not in named}

    @property
    def engine_options(self) -> dict[str, Any]:
        """``sqlalchemy.create_engine`` options: on PostgreSQL, libpq's failover settings.
        ``open_sql_engine`` tests the connections that rested in the pool as they leave
        it, so those a failover broke are replaced, not handed out."""
        if self.backend is Backend.SQLITE:
            return {}
        return {"connect_args": self.connection_defaults}


@dataclass(frozen=True, slots=True)
class _PostgresParts:
    """``scheme://[userinfo@]hosts[/path][?query]``, split without judging any part."""

    rest: str
    """Everything after ``://``."""
    userinfo: str
    hosts: list[tuple[str, str]]
    """``(host, port)`` per comma-separated authority entry; ``""`` where left out."""
    path: str
    query: str

    @classmethod
    def of(cls, url: str) -> "_PostgresParts":
        rest = url.split("://", 1)[1]
        authority_end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0),
                            default=len(rest))  # fmt: skip
        authority, tail = rest[:authority_end], rest[authority_end:]
        userinfo, _, hostlist = authority.rpartition("@")
        path, _, query = tail.partition("?")
        hosts = [_host_and_port(entry) for entry in hostlist.split(",")] if hostlist else []
        return cls(rest, userinfo, hosts, path, query)

    @property
    def names_hosts_in_query(self) -> bool:
        return any(name in ("host", "hostaddr", "port") for name, _ in parse_qsl(self.query))


def _host_and_port(entry: str) -> tuple[str, str]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if entry.startswith("["):
        close = entry.find("]")
        port = entry[close + 2 :] if entry[close + 1 : close + 2] == ":" else ""
        return entry[1:close], port
    host, _, port = entry.partition(":")
    return host, port


def unreachable(url: str, error: Exception) -> DatabaseUnavailableError:
    """A one-line, password-free account of why the database did not answer."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip()
    first_line = text.splitlines()[0] if text else type(cause).__name__
    return DatabaseUnavailableError(f"cannot reach the database {redact(url)}: {first_line}")
