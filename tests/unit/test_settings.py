"""Configuration: supported database URLs, and errors that say what to fix."""

import pytest

from services.eventstore import Backend, DatabaseUrl, UnsupportedDatabaseUrlError, redact
from services.settings import ConfigurationError, load_settings


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("sqlite:///coreline.db", Backend.SQLITE),
        ("sqlite:////var/lib/coreline/store.db", Backend.SQLITE),
        ("postgresql://coreline:pw@db:5432/coreline", Backend.POSTGRES),
        ("postgresql:///coreline?host=/run/postgresql", Backend.POSTGRES),
    ],
)
def test_supported_urls(url: str, backend: Backend) -> None:
    """SQLite files and PostgreSQL over TCP or a socket directory are accepted."""
    assert DatabaseUrl.parse(url).backend is backend


def test_sqlalchemy_url_uses_psycopg() -> None:
    """Alembic reaches PostgreSQL through psycopg 3, keeping socket-directory queries."""
    url = DatabaseUrl.parse("postgresql:///coreline?host=/run/postgresql")
    assert url.sqlalchemy_url == "postgresql+psycopg:///coreline?host=/run/postgresql"


@pytest.mark.parametrize("url", ["mysql://db/coreline", "sqlite://", "coreline.db", ""])
def test_unsupported_urls_are_refused(url: str) -> None:
    """Anything else is refused with the forms that would work."""
    with pytest.raises(UnsupportedDatabaseUrlError, match=r"sqlite:///path/to/file\.db"):
        DatabaseUrl.parse(url)


def test_passwords_never_appear_in_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad URL's error names the variable and hides the password."""
    monkeypatch.setenv("CORELINE_DATABASE_URL", "mysql://admin:hunter2@db/coreline")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "CORELINE_DATABASE_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert redact("postgresql://u:hunter2@h:5432/d") == "postgresql://u:***@h:5432/d"


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command-line value wins over CORELINE_DATABASE_URL."""
    monkeypatch.setenv("CORELINE_DATABASE_URL", "sqlite:///from-env.db")
    assert (
        load_settings(database_url="sqlite:///from-flag.db").database_url
        == "sqlite:///from-flag.db"
    )
    assert load_settings().database_url == "sqlite:///from-env.db"
