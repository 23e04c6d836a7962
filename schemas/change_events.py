"""Events recording the changes people make (DESIGN §4): policies, bounds,
webhooks, users and tokens, each naming its author in ``by``.

They share the envelope and its hash chain, in streams of their own (see
``schemas.streams``: ``config:…`` and ``identity:…``), with ``device_id`` set to
``CHANGE_DEVICE_ID``.  Every data model forbids fields it does not name, so a secret
(a webhook secret, a password, a token or its digest) cannot be recorded by
mistake: there is no field to put it in.
"""

from typing import Annotated, Final, Literal

from pydantic import BaseModel, Field, StringConstraints

from schemas.config_events import CONFIG_CHANGE_TYPES, ConfigChangeModel
from schemas.envelope import EventEnvelope
from schemas.fields import FROZEN_STRICT_SHAPE, Author, ClinicId, ShortText, UtcTimestamp

Email = Annotated[str, StringConstraints(min_length=3, max_length=254)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
RoleName = Literal["manufacturer", "clinic", "auditor"]
PolicySettings = dict[
    ShortText, Annotated[float, Field(allow_inf_nan=False)] | Annotated[str, Field(max_length=64)]
]
"""Alert policy keys (``coverage_max_pct``…) and their values (numbers; ``time_zone``
an IANA zone name)."""


class _Data(BaseModel):
    model_config = FROZEN_STRICT_SHAPE

    by: Author


class PolicyChangedData(_Data):
    clinic_id: ClinicId
    overrides: PolicySettings
    """The clinic's overrides from now on (``{}``: DESIGN §7's defaults)."""
    previous: PolicySettings


class PolicyBound(BaseModel):
    model_config = FROZEN_STRICT_SHAPE

    min: Annotated[float, Field(allow_inf_nan=False)] | None = None
    max: Annotated[float, Field(allow_inf_nan=False)] | None = None


PolicyBounds = dict[ShortText, PolicyBound]


class PolicyBoundsChangedData(_Data):
    bounds: PolicyBounds
    """The manufacturer's bounds from now on, per policy key (keys left out: the
    platform's defaults)."""
    previous: PolicyBounds


class WebhookCreatedData(_Data):
    clinic_id: ClinicId
    webhook_id: ShortText
    url: Url


class WebhookChangedData(_Data):
    webhook_id: ShortText
    clinic_id: ClinicId | None = None


class UserCreatedData(_Data):
    user_id: ShortText
    email: Email
    role: RoleName
    clinic_id: ClinicId | None


class UserRoleChangedData(_Data):
    user_id: ShortText
    role: RoleName
    clinic_id: ClinicId | None
    previous_role: RoleName | None = None
    previous_clinic_id: ClinicId | None = None


class UserChangedData(_Data):
    user_id: ShortText


class TokenCreatedData(_Data):
    token_id: ShortText
    role: RoleName
    clinic_id: ClinicId | None
    label: Annotated[str, StringConstraints(max_length=200)]
    expires_at: UtcTimestamp | None


class TokenRevokedData(_Data):
    token_id: ShortText


class PolicyChanged(EventEnvelope):
    type: Literal["policy.changed"]
    data: PolicyChangedData


class PolicyBoundsChanged(EventEnvelope):
    type: Literal["policy_bounds.changed"]
    data: PolicyBoundsChangedData


class WebhookCreated(EventEnvelope):
    type: Literal["webhook.created"]
    data: WebhookCreatedData


class WebhookDeleted(EventEnvelope):
    type: Literal["webhook.deleted"]
    data: WebhookChangedData


class WebhookDisabled(EventEnvelope):
    type: Literal["webhook.disabled"]
    data: WebhookChangedData


class WebhookEnabled(EventEnvelope):
    type: Literal["webhook.enabled"]
    data: WebhookChangedData


class WebhookSecretRotated(EventEnvelope):
    type: Literal["webhook.secret_rotated"]
    data: WebhookChangedData


class UserCreated(EventEnvelope):
    type: Literal["user.created"]
    data: UserCreatedData


class UserRoleChanged(EventEnvelope):
    type: Literal["user.role_changed"]
    data: UserRoleChangedData


class UserDisabled(EventEnvelope):
    type: Literal["user.disabled"]
    data: UserChangedData


class UserEnabled(EventEnvelope):
    type: Literal["user.enabled"]
    data: UserChangedData


class UserPasswordReset(EventEnvelope):
    type: Literal["user.password_reset"]
    data: UserChangedData


class TokenCreated(EventEnvelope):
    type: Literal["token.created"]
    data: TokenCreatedData


class TokenRevoked(EventEnvelope):
    type: Literal["token.revoked"]
    data: TokenRevokedData


ChangeEventModel = (
    PolicyChanged
    | PolicyBoundsChanged
    | WebhookCreated
    | WebhookDeleted
    | WebhookDisabled
    | WebhookEnabled
    | WebhookSecretRotated
    | UserCreated
    | UserRoleChanged
    | UserDisabled
    | UserEnabled
    | UserPasswordReset
    | TokenCreated
    | TokenRevoked
    | ConfigChangeModel
)
ChangeEvent = Annotated[ChangeEventModel, Field(discriminator="type")]

CHANGE_EVENT_TYPES: Final = frozenset(
    {
        "policy.changed",
        "policy_bounds.changed",
        "webhook.created",
        "webhook.deleted",
        "webhook.disabled",
        "webhook.enabled",
        "webhook.secret_rotated",
        "user.created",
        "user.role_changed",
        "user.disabled",
        "user.enabled",
        "user.password_reset",
        "token.created",
        "token.revoked",
        *CONFIG_CHANGE_TYPES,
    }
)
