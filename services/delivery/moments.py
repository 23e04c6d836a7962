"""Instants as the delivery tables hold them."""

from datetime import UTC, datetime


def utc_moment(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored one is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
