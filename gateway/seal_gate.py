"""Device seals at the door (DESIGN §4.1): one signature check per batch.

From a device's first registered key on, a batch is stored only with a seal that
verifies under one of its registered, unrevoked keys; any other batch is
dead-lettered whole with reason ``signature`` (its events stay on the device, and
a resend after re-enrolment heals the gap).  A device with no key may send
unsealed batches; a seal it sends anyway is not stored (no key can vouch for it).

A decommissioned device's batches are refused whole too, sealed or not, with
reason ``identity`` (docs/device-identity.md): its stream is closed.

Keys, and whether the device is decommissioned, are folded from each device's
registry stream and cached.  A cached keyring
is read again after ``refresh_after_s`` (so a key registered or revoked through
the API, or a decommissioning, takes effect without a restart), and at once, at most every
``retry_unknown_s``, when a seal names a key the cache does not know (a device
enrolled a moment ago should not wait for the refresh).
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import orjson

from gateway import metrics
from schemas import Rejection, RejectionReason, SealedEvent, utc_text
from schemas.device_identity import RegistryFact, fold_identity
from schemas.seals import KEY_EVENT_TYPES, Keyring, SealClaim, fold_keyring
from schemas.streams import device_stream, registry_stream
from seal_keys import PublicSealKey, verify_claim
from services.eventstore import DeadLetter, EventLog, StreamSeal

DEFAULT_REFRESH_S: Final = 5.0
DEFAULT_RETRY_UNKNOWN_S: Final = 0.5


@dataclass(slots=True)
class Claim:
    """One MQTT message's events, the dead letters its decoding made, and its seal:
    what the seal gate admits or refuses as a whole."""

    topic: str
    payload: bytes
    device_id: str
    events: list[SealedEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    seal: SealClaim | None = None


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    keyring: Keyring
    public: dict[str, PublicSealKey]
    loaded_at: float
    retired: str | None = None
    """Why every batch of the device is refused, sealed or not: it was decommissioned."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the gate made of the claims: the seals to store beside their events, and
    the claims refused whole (each with the dead letter that replaces it)."""

    seals: tuple[StreamSeal, ...]
    refused: tuple[tuple[Claim, DeadLetter], ...]


class KeyCache:
    """Each device's keyring, read from the store when missing or stale."""

    def __init__(
        self,
        refresh_after_s: float = DEFAULT_REFRESH_S,
        retry_unknown_s: float = DEFAULT_RETRY_UNKNOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._refresh_after_s = refresh_after_s
        self._retry_unknown_s = retry_unknown_s
        self._clock = clock
        self._devices: dict[str, DeviceKeys] = {}

    def keys(self, store: EventLog, device_id: str, key_id: str | None) -> DeviceKeys:
        now = self._clock()
        cached = self._devices.get(device_id)
        if cached is None or not self._fresh(cached, key_id, now):
            cached = self._devices[device_id] = _load(store, device_id, now)
        return cached

    def _fresh(self, cached: DeviceKeys, key_id: str | None, now: float) -> bool:
        age = now - cached.loaded_at
        if age >= self._refresh_after_s:
            return False
        unknown = key_id is not None and key_id not in cached.keyring.keys
        return not (unknown and age >= self._retry_unknown_s)


def judge(claims: Sequence[Claim], keys_of: Callable[[str, str | None], DeviceKeys]) -> Verdict:
    """Admit or refuse each claim; ``keys_of(device_id, key_id)`` gives the device's keys."""
    seals: list[StreamSeal] = []
    refused: list[tuple[Claim, DeadLetter]] = []
    for claim in claims:
        key_id = claim.seal.seal.key_id if claim.seal is not None else None
        keys = keys_of(claim.device_id, key_id)
        if keys.retired is not None:
            rejection = Rejection(
                RejectionReason.IDENTITY, keys.retired, claim.payload, claim.device_id, None
            )
            refused.append((claim, DeadLetter(claim.topic, rejection)))
            continue
        if not keys.keyring.enrolled:
            continue  # protocol v1: unsealed, and verification reports it so
        outcome = _admit(claim, keys)
        if isinstance(outcome, StreamSeal):
            seals.append(outcome)
            metrics.SEALS_VERIFIED.inc()
            continue
        problem = outcome
        rejection = Rejection(
            RejectionReason.SIGNATURE, problem, claim.payload, claim.device_id, None
        )
        refused.append((claim, DeadLetter(claim.topic, rejection)))
    return Verdict(tuple(seals), tuple(refused))


def _load(store: EventLog, device_id: str, now: float) -> DeviceKeys:
    """One read of the device's registry stream: its keys and its decommissioning."""
    facts = [
        RegistryFact(event.seq, event.type, event.occurred_at, orjson.loads(event.body)["data"])
        for event in store.read_stream(registry_stream(device_id))
    ]
    keyring = fold_keyring((fact.type, fact.data) for fact in facts
                           if fact.type in KEY_EVENT_TYPES)  # fmt: skip
    public = {key_id: PublicSealKey(key.public_key) for key_id, key in keyring.keys.items()}
    retired = fold_identity(device_id, facts).decommissioned
    refusal = None
    if retired is not None:
        refusal = (
            f"{device_id} was decommissioned at {utc_text(retired.at)} ({retired.reason}): "
            "its events are refused"
        )
    return DeviceKeys(keyring, public, now, refusal)


def _admit(claim: Claim, keys: DeviceKeys) -> StreamSeal | str:
    """The seal to store with ``claim``, or why the claim may not be stored."""
    if claim.seal is None:
        return f"{claim.device_id} has a registered seal key: an unsealed batch is refused"
    seal = claim.seal.seal
    key = keys.keyring.keys.get(seal.key_id)
    if key is None:
        return f"seal by key {seal.key_id}, which is not registered for {claim.device_id}"
    if not key.may_seal():
        return f"seal by key {seal.key_id}, which was revoked"
    event_hash = claim.seal.event_hash
    if event_hash is None:
        return f"seal seq {seal.seq} is not the seq of the batch's last valid event"
    if not verify_claim(keys.public[seal.key_id], claim.seal):
        return f"seal by key {seal.key_id} does not verify over seq {seal.seq}"
    return StreamSeal(device_stream(claim.device_id), seal.seq, event_hash, seal.key_id, seal.sig)
