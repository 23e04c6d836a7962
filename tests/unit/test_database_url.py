"""Several PostgreSQL hosts in one ``CORELINE_DATABASE_URL``: psycopg gets the URL as
written, SQLAlchemy the same hosts in the spelling its parser reads."""

import pytest
import sqlalchemy

from services.eventstore import DatabaseUrl, UnsupportedDatabaseUrlError

MULTI_HOST = (
    "postgresql://coreline:pw@pg1:5432,pg2:5433,[::1]:5434/coreline?target_session_attrs=read-write"
)


def test_hosts_in_the_authority_become_libpq_host_and_port_lists_for_sqlalchemy() -> None:
    """Each host keeps its port, in order, beside the URL's own query."""
    url = DatabaseUrl.parse(MULTI_HOST).sqlalchemy_url
    assert url == (
        "postgresql+psycopg://coreline:pw@/coreline?target_session_attrs=read-write"
        "&host=pg1,pg2,::1&port=5432,5433,5434"
    )


def test_sqlalchemy_hands_psycopg_every_host_and_the_session_attribute() -> None:
    """What SQLAlchemy's psycopg dialect passes to ``psycopg.connect``."""
    engine = sqlalchemy.create_engine(DatabaseUrl.parse(MULTI_HOST).sqlalchemy_url)
    _, arguments = engine.dialect.create_connect_args(engine.url)
    assert {name: arguments[name] for name in ("host", "port", "target_session_attrs")} == {
        "host": "pg1,pg2,::1",
        "port": "5432,5433,5434",
        "target_session_attrs": "read-write",
    }
    engine.dispose()


def test_hosts_without_ports_use_the_default_port() -> None:
    """No port list at all when no host names one."""
    url = DatabaseUrl.parse("postgresql://pg1,pg2/coreline").sqlalchemy_url
    assert url == "postgresql+psycopg:///coreline?host=pg1,pg2"


def test_single_host_urls_are_unchanged() -> None:
    """One host (or a socket directory) keeps the form it had."""
    assert (
        DatabaseUrl.parse("postgresql://u:p@db:5432/coreline").sqlalchemy_url
        == "postgresql+psycopg://u:p@db:5432/coreline"
    )
    assert (
        DatabaseUrl.parse("postgresql://u@/coreline?host=a,b&port=1,2").sqlalchemy_url
        == "postgresql+psycopg://u@/coreline?host=a,b&port=1,2"
    )


def test_hosts_named_twice_are_refused() -> None:
    """Hosts in both the authority and the query would leave libpq to pick one."""
    with pytest.raises(UnsupportedDatabaseUrlError, match="name them once"):
        DatabaseUrl.parse("postgresql://pg1,pg2/coreline?host=pg3")


def test_failover_defaults_yield_to_the_url() -> None:
    """A connect timeout and keepalives are added unless the URL sets its own."""
    assert DatabaseUrl.parse(MULTI_HOST).connection_defaults["connect_timeout"] == "5"
    own = DatabaseUrl.parse("postgresql://pg1,pg2/coreline?connect_timeout=2")
    assert "connect_timeout" not in own.connection_defaults
    assert own.engine_options["connect_args"] == own.connection_defaults
    assert DatabaseUrl.parse("sqlite:///coreline.db").engine_options == {}
