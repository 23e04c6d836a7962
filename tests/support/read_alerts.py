"""The alerts a read model holds, as (device, rule, subject, status), sorted."""

from sqlalchemy import select

from services.projections.read_store import ReadModelStore


def alert_rows(read_models: ReadModelStore) -> list[tuple[str, str, str, str]]:
    table = read_models.tables.alerts
    with read_models.engine.connect() as connection:
        rows = connection.execute(
            select(table.c.device_id, table.c.rule, table.c.subject, table.c.status)
        ).all()
    return sorted((row[0], row[1], row[2], row[3]) for row in rows)
