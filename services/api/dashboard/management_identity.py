"""Enrolment and decommissioning screens for the manufacturer (docs/device-identity.md):
issue a claim for a device's serial (registering the device first when it is new),
see every registered device's enrolment and the expiry of the certificate it uses,
revoke a certificate, decommission a device.  The same commands as the API's
``/devices/{id}/claims``, ``DELETE …/certificates/{fingerprint}`` and ``POST
…/decommission``, recorded with the signed-in person as author.  Registered on the
dashboard's router when the package loads.

A claim secret is shown once, in the answer to the form that issued it, never in a
link or a later page: the platform keeps only its SHA-256."""

from datetime import UTC, datetime
from typing import Annotated, Final
from urllib.parse import quote

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from fleet_ca import FleetCaError
from schemas.identity_events import SERIAL_PATTERN
from services.api import commands
from services.api.access import Action, Principal
from services.api.dashboard import form_fields
from services.api.dashboard.form_fields import FormInputError
from services.api.dashboard.routes import Api, PageRefused, Viewer, _page, _require, router
from services.api.deps import SameSiteForm
from services.api.identity import (
    ClaimSecret,
    IdentityConfig,
    decommission,
    issue_claim,
    load_identity,
    publish_crl,
    revoke_certificate,
)
from services.api.identity.views import identity_out, registered_identities
from services.api.problems import Problem
from services.eventstore import EventStore

_PAGE: Final = 200
_DONE: Final = {
    "revoked": "Certificate revoked: the broker refuses it from its next connection.",
    "decommissioned": "Decommissioned: its certificates are revoked and its events refused.",
}
_NO_CRL: Final = " The CRL could not be written: run `coreline fleet-ca crl`."


@router.get("/manage/identity")
def identities_page(request: Request, who: Viewer, api: Api) -> Response:
    _require(who, Action.MANAGE_DEVICES)
    return _identities_page(request, who, api)


@router.post("/manage/identity/claims")
def claim(
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    device_id: Annotated[str, Form()] = "",
    serial: Annotated[str, Form()] = "",
    model: Annotated[str, Form()] = "",
) -> Response:
    """Register the device if it is new (with its model), then issue its claim."""
    _require(who, Action.MANAGE_DEVICES)
    try:
        device = form_fields.device_id(device_id)
        number = form_fields.matching(serial, SERIAL_PATTERN, "Serial", "e.g. SN-2026-000123")
    except FormInputError as error:
        return _identities_page(request, who, api, problem=str(error), status=400)
    config = _config(request)
    with api.stores.borrow() as store:
        if not load_identity(store, device).registered:
            if not 1 <= len(model.strip()) <= 64:
                problem = f"{device} is new: give its model (1 to 64 characters) to register it."
                return _identities_page(request, who, api, problem=problem, status=400)
            commands.register_device(store, device, model.strip(), who.author)
        try:
            issued = issue_claim(store, device, number, who.author, config.claim_lifetime)
        except Problem as problem:
            return _identities_page(
                request, who, api, problem=problem.detail, status=problem.status
            )
    return _identities_page(request, who, api, claim=issued)


@router.get("/manage/identity/{device_id}")
def identity_page(
    request: Request,
    who: Viewer,
    api: Api,
    device_id: str,
    done: str | None = None,
    crl: str | None = None,
) -> Response:
    _require(who, Action.MANAGE_DEVICES)
    said = _DONE.get(done or "")
    if said and crl == "missing":
        said += _NO_CRL
    return _identity_page(request, who, api, device_id, done=said)


@router.post("/manage/identity/{device_id}/certificates/{fingerprint}/revoke")
def revoke(
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    device_id: str,
    fingerprint: str,
    reason: Annotated[str, Form()] = "",
) -> Response:
    _require(who, Action.MANAGE_DEVICES)
    if not 1 <= len(reason.strip()) <= 2000:
        problem = "Reason: say why (recorded with the revocation)."
        return _identity_page(request, who, api, device_id, problem=problem, status=400)
    with api.stores.borrow() as store:
        try:
            revoke_certificate(store, device_id, fingerprint, reason.strip(), who.author)
        except Problem as problem:
            return _identity_page(
                request, who, api, device_id, problem=problem.detail, status=problem.status
            )
        published = _publish(api, store, _config(request))
    return _done(device_id, "revoked", published)


@router.post("/manage/identity/{device_id}/decommission")
def retire(
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    device_id: str,
    reason: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    """Needs the device id typed again: there is no undoing it."""
    _require(who, Action.MANAGE_DEVICES)
    if confirm.strip() != device_id:
        problem = f"Type {device_id} to confirm: a decommissioned device never comes back."
        return _identity_page(request, who, api, device_id, problem=problem, status=400)
    if not 1 <= len(reason.strip()) <= 2000:
        problem = "Reason: say why (recorded with the decommissioning)."
        return _identity_page(request, who, api, device_id, problem=problem, status=400)
    with api.stores.borrow() as store:
        try:
            decommission(store, device_id, reason.strip(), who.author)
        except Problem as problem:
            return _identity_page(
                request, who, api, device_id, problem=problem.detail, status=problem.status
            )
        published = _publish(api, store, _config(request))
    return _done(device_id, "decommissioned", published)


def _identities_page(
    request: Request,
    who: Principal,
    api: Api,
    *,
    claim: ClaimSecret | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    with api.engine.connect() as db, api.stores.borrow() as store:
        identities = registered_identities(db, store, datetime.now(UTC), None, _PAGE)[:_PAGE]
    response = _page(
        request, "manage_identity.html", who, identities=identities, claim=claim,
        problem=problem,
    )  # fmt: skip
    response.status_code = status
    return response


def _identity_page(
    request: Request,
    who: Principal,
    api: Api,
    device_id: str,
    *,
    done: str | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    with api.stores.borrow() as store:
        identity = load_identity(store, device_id)
    if identity.through_seq == 0:
        raise PageRefused(404, "There is no such device.")
    response = _page(
        request, "manage_identity_device.html", who,
        identity=identity_out(identity, datetime.now(UTC)), done=done, problem=problem,
    )  # fmt: skip
    response.status_code = status
    return response


def _done(device_id: str, what: str, published: bool) -> Response:
    suffix = "" if published else "&crl=missing"
    return RedirectResponse(
        f"/manage/identity/{quote(device_id)}?done={what}{suffix}", status_code=303
    )


def _publish(api: Api, store: EventStore, config: IdentityConfig) -> bool:
    try:
        publish_crl(store, api.engine, config)
    except (FleetCaError, OSError):
        return False
    return True


def _config(request: Request) -> IdentityConfig:
    found: IdentityConfig = request.app.state.identity
    return found
