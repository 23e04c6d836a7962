"""The SQLAlchemy engine over the platform's database, for the delivery loop and
its readers."""

from services.eventstore import open_sql_engine as open_engine

__all__ = ["open_engine"]
