"""A device's seal keys (DESIGN §4.1): register, revoke, list.  The manufacturer's:
a key decides which batches of the device the platform accepts."""

from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import DEVICE_ID_PATTERN
from schemas.seals import ED25519, b64url
from services.api import commands
from services.api.deps import DeviceManager, Store
from services.api.models import Accepted
from services.api.problems import ERROR_RESPONSES
from services.eventstore import load_keyring

router = APIRouter(prefix="/devices", tags=["device keys"], responses=ERROR_RESPONSES)
DevicePath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, examples=["HP-000123"])]
KeyIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", examples=["3f9a0c1b2d4e5f60"])]


class RegisterKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    public_key: str = Field(
        min_length=43, max_length=44, description="Base64url (no padding) of the raw 32 bytes."
    )


class DeviceKeyOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    key_id: str
    public_key: str
    algorithm: str
    revoked: bool
    sealed_through: int | None = Field(
        description="For a revoked key: the highest seq it sealed, whose seals stay valid."
    )


_CONFLICT: Final[dict[int | str, dict[str, Any]]] = {
    409: ERROR_RESPONSES[400] | {"description": "Registered, or revoked, already"}
}


@router.post(
    "/{device_id}/keys",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Register a seal key",
    responses=_CONFLICT,
)
def register_key(
    who: DeviceManager, store: Store, device_id: DevicePath, body: RegisterKey
) -> Accepted:
    """From the first key on, the device's batches are accepted only sealed by one of
    its registered, unrevoked keys."""
    return commands.register_key(store, device_id, body.public_key, who.author)


@router.delete(
    "/{device_id}/keys/{key_id}",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Revoke a seal key",
    responses=_CONFLICT,
)
def revoke_key(
    who: DeviceManager,
    store: Store,
    device_id: DevicePath,
    key_id: KeyIdPath,
    reason: Annotated[str, Query(min_length=1, max_length=2000)],
) -> Accepted:
    """Later seals by the key are refused; those it made before stay valid."""
    return commands.revoke_key(store, device_id, key_id, reason, who.author)


@router.get("/{device_id}/keys", summary="A device's seal keys")
def list_keys(who: DeviceManager, store: Store, device_id: DevicePath) -> list[DeviceKeyOut]:
    """Every key ever registered, revoked ones included, in key id order."""
    keyring = load_keyring(store, device_id)
    return [
        DeviceKeyOut(
            key_id=key.key_id,
            public_key=b64url(key.public_key),
            algorithm=ED25519,
            revoked=key.revoked,
            sealed_through=key.sealed_through,
        )
        for key in sorted(keyring.keys.values(), key=lambda key: key.key_id)
    ]
