"""Ed25519 for device seals (DESIGN §4.1): the one package that signs and verifies
them, so the agent, the simulator, the gateway and the audit share one reading of
the normative bytes (``schemas.seals``)."""

from seal_keys.keys import (
    PublicSealKey,
    SealKey,
    SealKeyError,
    usable,
    usable_public_key,
    verify_claim,
)

__all__ = [
    "PublicSealKey",
    "SealKey",
    "SealKeyError",
    "usable",
    "usable_public_key",
    "verify_claim",
]
