"""Device identity (docs/device-identity.md): every certificate the fleet CA signed.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The fleet CA's own log: each certificate it signed, whole, kept before the
    # event that hands it to a device is recorded.  The events say which certificate
    # a device holds and which are revoked; only this table has the certificate
    # itself, so an enrolment whose answer was lost can be answered again.
    op.execute(
        """
        CREATE TABLE device_certificates (
            fingerprint  text        NOT NULL,
            device_id    text        NOT NULL,
            serial       text        NOT NULL,
            key_digest   text        NOT NULL,
            not_before   timestamptz NOT NULL,
            not_after    timestamptz NOT NULL,
            issued_at    timestamptz NOT NULL,
            certificate  text        NOT NULL,
            PRIMARY KEY (fingerprint),
            CONSTRAINT device_certificates_serial UNIQUE (serial)
        )
        """
    )
    op.execute(
        "CREATE INDEX device_certificates_device ON device_certificates (device_id, issued_at)"
    )
    op.execute("CREATE INDEX device_certificates_expiry ON device_certificates (not_after)")
    op.execute(
        "CREATE TRIGGER device_certificates_append_only BEFORE UPDATE OR DELETE "
        "ON device_certificates FOR EACH ROW EXECUTE FUNCTION coreline_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER device_certificates_no_truncate BEFORE TRUNCATE ON device_certificates "
        "FOR EACH STATEMENT EXECUTE FUNCTION coreline_refuse_change()"
    )
