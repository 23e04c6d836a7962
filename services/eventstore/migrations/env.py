"""Alembic environment: one connection, one advisory lock so that two processes
running ``coreline db upgrade`` at once take turns instead of racing."""

from alembic import context
from sqlalchemy import create_engine, pool, text

_UPGRADE_LOCK = 0x436F72656C696E65  # "Coreline"

engine = create_engine(context.config.attributes["sqlalchemy_url"], poolclass=pool.NullPool)
with engine.connect() as connection:
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _UPGRADE_LOCK})
    connection.commit()
    try:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _UPGRADE_LOCK})
        connection.commit()
