"""People and token screens for the manufacturer: named accounts (create with a role
and clinic, disable and enable, reset the password and the authenticator) and machine
tokens (list, create with an expiry, revoke).

What ``coreline user`` and ``coreline token`` do, through the same functions and the
same records (``user_changes``, ``token_changes``), with the signed-in person as the
author instead of the command line's operator.  A generated password, authenticator
enrolment or token is on the one page that answers the change, and never again: the
platform keeps only its hash (or the sealed TOTP secret).
"""

import re
from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.api.access import Action, Principal, PrincipalKind, Role, scope_problem
from services.api.dashboard import form_fields
from services.api.dashboard.form_fields import FormInputError
from services.api.dashboard.routes import Api, PageRefused, Viewer, _page, _require
from services.api.deps import SameSiteForm
from services.api.people import (
    Enrolment,
    User,
    UserError,
    create_user,
    list_users,
    reset_password,
    set_disabled,
    set_role,
)
from services.api.token_changes import record_token_created, revoke_recorded
from services.api.tokens import (
    TokenError,
    create_token,
    list_tokens,
    parse_lifetime,
)
from services.api.user_changes import record_user_change, record_user_created

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

_DONE: Final = {
    "disabled": "Account disabled: its sessions ended, and it cannot sign in.",
    "enabled": "Account enabled: it can sign in again.",
    "revoked": "Token revoked: it is refused from now on.",
    "role": "Role changed: the account's sessions ended; it signs in again to use it.",
    "unchanged": "The account is so already: nothing recorded.",
}
_FIELDS: Final = {
    "--email": ("email", "E-mail"),
    "--name": ("display_name", "Name"),
    "--clinic": ("clinic_id", "Clinic"),
    "--label": ("label", "Label"),
    "--expires-in": ("expires_in", "Expires in"),
}
_TAKEN: Final = "There is already an account"
_CLI_HINT: Final = re.compile(r"\s*\(see `coreline [a-z]+ list`\)")


@router.get("/manage/people")
def people_page(request: Request, who: Viewer, api: Api, done: str | None = None) -> Response:
    _require(who, Action.MANAGE_PEOPLE)
    return _people_page(request, who, api, done=_DONE.get(done or ""))


@router.post("/manage/people/users")
def add_user(  # noqa: PLR0913 - one form field each
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    *,
    email: Annotated[str, Form()] = "",
    display_name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    clinic_id: Annotated[str, Form()] = "",
) -> Response:
    _require(who, Action.MANAGE_PEOPLE)
    typed = {"email": email, "display_name": display_name, "role": role, "clinic_id": clinic_id}
    try:
        chosen = _role(role)
        clinic = form_fields.clinic_id(clinic_id)
        enrolment = create_user(
            api.engine, api.people.passwords.box, email, display_name, chosen, clinic
        )
        with api.stores.borrow() as store:
            record_user_created(store, api.engine, enrolment.user, who.author)
    except (FormInputError, UserError) as error:
        field, message = _at_field(str(error), "clinic_id" if isinstance(error, FormInputError)
                                   else "")  # fmt: skip
        status = 409 if message.startswith(_TAKEN) else 422
        return _people_page(request, who, api, user_form=typed, user_errors={field: message},
                            status=status)  # fmt: skip
    return _people_page(request, who, api, enrolment=enrolment, status=201)


@router.post("/manage/people/users/{user_id}/disable")
def disable_user(
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    user_id: str,
    enable: Annotated[str, Form()] = "",
) -> Response:
    _require(who, Action.MANAGE_PEOPLE)
    user = _user(api, user_id)
    wanted_disabled = enable != "yes"
    if wanted_disabled and who.kind is PrincipalKind.USER and who.subject_id == user.user_id:
        raise PageRefused(409, "You may not disable the account you are signed in with.")
    if user.disabled == wanted_disabled:
        return RedirectResponse("/manage/people?done=unchanged", status_code=303)
    kind = "user.disabled" if wanted_disabled else "user.enabled"
    try:
        with api.stores.borrow() as store:
            record_user_change(store, api.engine, user.email, kind, who.author)
        set_disabled(api.engine, user.email, disabled=wanted_disabled)
    except UserError as error:
        raise PageRefused(422, _plain(str(error))) from None
    return RedirectResponse(f"/manage/people?done={kind.removeprefix('user.')}", 303)


@router.post("/manage/people/users/{user_id}/reset")
def reset_user(
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    user_id: str,
    new_totp: Annotated[str, Form()] = "",
) -> Response:
    """A new generated password (and, if asked, a new authenticator), shown once; the
    account's sessions end and a lock-out is lifted."""
    _require(who, Action.MANAGE_PEOPLE)
    user = _user(api, user_id)
    try:
        with api.stores.borrow() as store:
            record_user_change(store, api.engine, user.email, "user.password_reset", who.author)
        enrolment = reset_password(
            api.engine, api.people.passwords.box, user.email, new_totp=new_totp == "yes"
        )
    except UserError as error:
        raise PageRefused(422, _plain(str(error))) from None
    return _people_page(request, who, api, enrolment=enrolment, reset=True)


@router.post("/manage/people/users/{user_id}/role")
def change_role(
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    user_id: str,
    role: Annotated[str, Form()] = "",
    clinic_id: Annotated[str, Form()] = "",
) -> Response:
    """A new role and scope; the account's sessions end, so no page rendered under the
    old role stays usable."""
    _require(who, Action.MANAGE_PEOPLE)
    user = _user(api, user_id)
    if who.kind is PrincipalKind.USER and who.subject_id == user.user_id:
        raise PageRefused(409, "You may not change the role of the account you are signed in with.")
    try:
        scope = _scope(role, clinic_id)
        if scope == (user.role, user.clinic_id):
            return RedirectResponse("/manage/people?done=unchanged", status_code=303)
        with api.stores.borrow() as store:
            record_user_change(
                store, api.engine, user.email, "user.role_changed", who.author, scope
            )
        set_role(api.engine, user.email, *scope)
    except (FormInputError, UserError) as error:
        raise PageRefused(422, _at_field(str(error), "")[1]) from None
    return RedirectResponse("/manage/people?done=role", status_code=303)


@router.post("/manage/people/tokens")
def add_token(  # noqa: PLR0913 - one form field each
    request: Request,
    who: Viewer,
    same_site: SameSiteForm,
    api: Api,
    *,
    role: Annotated[str, Form()] = "",
    clinic_id: Annotated[str, Form()] = "",
    label: Annotated[str, Form()] = "",
    expires_in: Annotated[str, Form()] = "365d",
) -> Response:
    _require(who, Action.MANAGE_PEOPLE)
    typed = {"role": role, "clinic_id": clinic_id, "label": label, "expires_in": expires_in}
    try:
        chosen = _role(role)
        lifetime = parse_lifetime(expires_in)
        record, token = create_token(
            api.engine, chosen, clinic_id.strip() or None, label.strip(), lifetime
        )
        with api.stores.borrow() as store:
            record_token_created(store, api.engine, record, who.author)
    except (FormInputError, TokenError) as error:
        field, message = _at_field(str(error), "")
        return _people_page(request, who, api, token_form=typed, token_errors={field: message},
                            status=422)  # fmt: skip
    shown = {"token_id": record.token_id, "token": token, "label": record.label}
    return _people_page(request, who, api, new_token=shown, status=201)


@router.post("/manage/people/tokens/{token_id}/revoke")
def revoke(who: Viewer, same_site: SameSiteForm, api: Api, token_id: str) -> Response:
    _require(who, Action.MANAGE_PEOPLE)
    try:
        with api.stores.borrow() as store:
            revoke_recorded(store, api.engine, token_id, who.author)
    except TokenError:
        raise PageRefused(404, "There is no such live token.") from None
    return RedirectResponse("/manage/people?done=revoked", status_code=303)


def _role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        roles = ", ".join(role.value for role in Role)
        raise FormInputError(f"Role: one of {roles}.") from None


def _scope(role: str, clinic_id: str) -> tuple[Role, str | None]:
    """A role and clinic an account may have (the API's rule), or ``UserError``."""
    scope = (_role(role), form_fields.clinic_id(clinic_id))
    problem = scope_problem(*scope)
    if problem:  # worded for an account, as ``create_user`` words it
        raise UserError(problem.replace("token", "user"))
    return scope


def _user(api: Api, user_id: str) -> User:
    for user in list_users(api.engine):
        if user.user_id == user_id:
            return user
    raise PageRefused(404, "There is no such account.")


def _at_field(message: str, field: str) -> tuple[str, str]:
    """The form field a message of the account and token functions is about (they
    name the command line's options), and the message in the form's words."""
    for option, (name, label) in _FIELDS.items():
        if option in message:
            field = field or name
            message = message.replace(option, label)
    if message.startswith("Role:"):
        field = "role"
    elif message.startswith("there is already"):
        field = "email"
    elif "needs Clinic" in message or "leave out Clinic" in message:
        field = "clinic_id"
    return field, _plain(message)


def _plain(message: str) -> str:
    text = _CLI_HINT.sub("", message).strip()
    return text[:1].upper() + text[1:]


def _people_page(  # noqa: PLR0913 - the page's parts
    request: Request,
    who: Principal,
    api: Api,
    *,
    done: str | None = None,
    enrolment: Enrolment | None = None,
    reset: bool = False,
    new_token: dict[str, str] | None = None,
    user_form: dict[str, str] | None = None,
    user_errors: dict[str, str] | None = None,
    token_form: dict[str, str] | None = None,
    token_errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    now = datetime.now(UTC)
    tokens = sorted(list_tokens(api.engine), key=lambda record: record.created_at, reverse=True)
    response = _page(
        request, "manage_people.html", who, users=list_users(api.engine), tokens=tokens,
        now=now, done=done, enrolment=enrolment, reset=reset, new_token=new_token,
        user_form=user_form or {}, user_errors=user_errors or {},
        token_form=token_form or {"expires_in": "365d"}, token_errors=token_errors or {},
        roles=[role.value for role in Role],
    )  # fmt: skip
    response.status_code = status
    if enrolment is not None or new_token is not None:
        # A page showing a password, an authenticator secret or a token: no cache keeps it.
        response.headers["Cache-Control"] = "no-store"
    return response
