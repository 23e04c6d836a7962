"""Devices' identities, as the manufacturer manages them (docs/device-identity.md):
who enrolled with which certificate, revocation, decommissioning, and the fleet
CA's certificate and revocation list for brokers and devices."""

import logging
import pathlib
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from fleet_ca import CA_CERT, FleetCaError
from schemas.fields import DEVICE_ID_PATTERN
from services.api.deps import Context, Db, DeviceManager, DeviceReader, Store
from services.api.identity import (
    IdentityConfig,
    decommission,
    load_identity,
    publish_crl,
    revoke_certificate,
)
from services.api.identity.views import IdentityOut, identity_out, registered_identities
from services.api.pagination import CursorParam, Limit, Page, decode_cursor, next_cursor
from services.api.problems import ERROR_RESPONSES, Problem, not_found
from services.api.queries import devices as queries
from services.api.routes.enrolment import identity_settings
from services.eventstore import EventStore

log = logging.getLogger(__name__)
router = APIRouter(tags=["device identity"], responses=ERROR_RESPONSES)
DevicePath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, examples=["HP-000123"])]
FingerprintPath = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
PEM_MEDIA_TYPE: Final = "application/x-pem-file"
_CONFLICT: Final[dict[int | str, dict[str, Any]]] = {
    409: ERROR_RESPONSES[400] | {"description": "Revoked or decommissioned already"}
}


class Decommission(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class RevocationOut(BaseModel):
    device_id: str
    revoked: int = Field(description="Certificates revoked by this request.")
    crl_published: bool
    crl_problem: str | None = Field(
        description="Why the CRL could not be written (the revocation is recorded: run "
        "`coreline fleet-ca crl`)."
    )


@router.get("/identities", summary="Registered devices' identities")
def list_identities(
    who: DeviceManager, db: Db, store: Store, cursor: CursorParam = None, limit: Limit = 100
) -> Page[IdentityOut]:
    """Registered devices in id order, each with its claim, enrolment, certificate in
    use (and its expiry) and decommissioning."""
    del who
    after = decode_cursor(cursor, (str,))
    rows = registered_identities(
        db, store, datetime.now(UTC), None if after is None else after[0], limit
    )
    return Page(
        items=rows[:limit], next_cursor=next_cursor(rows, limit, lambda row: [row.device_id])
    )


@router.get("/devices/{device_id}/identity", summary="A device's identity")
def get_identity(who: DeviceReader, db: Db, store: Store, device_id: DevicePath) -> IdentityOut:
    """Serial, enrolment, every certificate with its status, decommissioning."""
    if not queries.device_visible(db, who, device_id):
        raise not_found("device")
    return identity_out(load_identity(store, device_id), datetime.now(UTC))


@router.delete(
    "/devices/{device_id}/certificates/{fingerprint}",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Revoke a device certificate",
    responses=_CONFLICT,
)
def revoke(
    who: DeviceManager,
    api: Context,
    store: Store,
    request: Request,
    device_id: DevicePath,
    fingerprint: FingerprintPath,
    reason: Annotated[str, Query(min_length=1, max_length=2000)],
) -> RevocationOut:
    """Recorded, then the CRL is written and the broker told: the certificate's next
    connection is refused."""
    revoke_certificate(store, device_id, fingerprint, reason, who.author)
    return _published(device_id, 1, store, api.engine, identity_settings(request))


@router.post(
    "/devices/{device_id}/decommission",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Decommission a device",
    responses=_CONFLICT,
)
def retire(
    who: DeviceManager,
    api: Context,
    db: Db,
    store: Store,
    request: Request,
    device_id: DevicePath,
    body: Decommission,
) -> RevocationOut:
    """Its certificates are revoked with it; its later events are refused as
    ``identity`` dead letters; its history stays, and verifies; it can never be
    assigned, claimed or enrolled again."""
    if not queries.device_visible(db, who, device_id):
        raise not_found("device")
    revoked = decommission(store, device_id, body.reason, who.author)
    return _published(device_id, revoked, store, api.engine, identity_settings(request))


@router.get(
    "/fleet-ca/certificate",
    summary="The fleet CA's certificate",
    response_class=Response,
    responses={200: {"content": {PEM_MEDIA_TYPE: {}}, "description": "PEM"}},
)
def fleet_ca_certificate(request: Request) -> Response:
    """What brokers check device certificates with, and devices the broker with."""
    config = identity_settings(request)
    return Response(_read(config.fleet_ca_dir / CA_CERT, "the fleet CA"), media_type=PEM_MEDIA_TYPE)


@router.get(
    "/fleet-ca/crl",
    summary="The fleet CA's revocation list",
    response_class=Response,
    responses={200: {"content": {PEM_MEDIA_TYPE: {}}, "description": "PEM"}},
)
def fleet_ca_crl(request: Request) -> Response:
    """The CRL as last written: a broker on another host may fetch it from here."""
    config = identity_settings(request)
    return Response(_read(config.crl_path, "a CRL"), media_type=PEM_MEDIA_TYPE)


def _published(
    device_id: str, revoked: int, store: EventStore, engine: Engine, config: IdentityConfig
) -> RevocationOut:
    try:
        publish_crl(store, engine, config)
    except (FleetCaError, OSError) as error:
        log.warning("revoked %s, but the CRL was not written: %s", device_id, error)
        return RevocationOut(
            device_id=device_id, revoked=revoked, crl_published=False, crl_problem=str(error)
        )
    return RevocationOut(device_id=device_id, revoked=revoked, crl_published=True, crl_problem=None)


def _read(path: pathlib.Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        raise Problem(
            404, "not-found", "Not found", f"{what} is not there yet: `coreline fleet-ca init`"
        ) from None
