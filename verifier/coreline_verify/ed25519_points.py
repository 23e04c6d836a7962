"""Which 32 bytes are a usable Ed25519 public key: the canonical encoding of a point
of the prime-order group, decided exactly as the platform decides at registration
(libsodium's ``crypto_core_ed25519_is_valid_point``).

OpenSSL, behind ``cryptography``, loads any 32 bytes as a key and checks no group:
under a small-order key (the identity point above all) it verifies a signature
anyone can make (``R`` = [S]B, ``S`` anything), over any message.  The verifier keeps
``cryptography`` as its one dependency, so the check is written here with Python
integers, after libsodium's ``ge25519_is_canonical``, ``ge25519_frombytes``,
``ge25519_is_on_curve``, ``ge25519_has_small_order`` and
``ge25519_is_on_main_subgroup`` (and RFC 8032 §5.1.3's decoding).  It takes one or
two milliseconds (mostly [L]P) and runs once per registered key: the decision is
cached by the raw key.
"""

from functools import lru_cache
from typing import Final

_P: Final = 2**255 - 19
_L: Final = 2**252 + 27742317777372353535851937790883648493
"""The order of the prime-order group."""
_D: Final = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1: Final = pow(2, (_P - 1) // 4, _P)
_Y_MASK: Final = (1 << 255) - 1
_KEY_BYTES: Final = 32
_KEYS_KEPT: Final = 256

_Point = tuple[int, int, int, int]
"""Extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z."""
_NEUTRAL: Final[_Point] = (0, 1, 1, 0)


def _add(p: _Point, q: _Point) -> _Point:
    # RFC 8032 §5.1.4's addition: complete for a = -1 and d not a square, so it
    # holds for small-order points and doubling too.
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _times_l(point: _Point) -> _Point:
    result, addend, scalar = _NEUTRAL, point, _L
    while scalar:
        if scalar & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        scalar >>= 1
    return result


@lru_cache(maxsize=_KEYS_KEPT)
def point_defect(raw: bytes) -> str | None:
    """Why ``raw`` is not a usable public key (``"small order"``, ``"mixed order"``,
    ``"off the curve"``, ``"not canonical (…)"``, ``"not 32 bytes"``), or None if it
    is the canonical encoding of a point of the prime-order group."""
    if len(raw) != _KEY_BYTES:
        return "not 32 bytes"
    encoded = int.from_bytes(raw, "little")
    y, sign = encoded & _Y_MASK, encoded >> 255
    # ge25519_is_canonical: y below p (the sign bit is not looked at here).
    if y >= _P:
        return "not canonical (y ≥ p)"
    # ge25519_frombytes: x² = u/v; libsodium's candidate root differs from RFC
    # 8032's by a fourth root of unity, which changes neither whether v·x² = ±u
    # nor the root it settles on.
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = u * pow(u * v % _P, (_P - 5) // 8, _P) % _P
    vxx = v * x * x % _P
    if vxx != u:
        if vxx != -u % _P:
            return "off the curve"
        x = x * _SQRT_M1 % _P
    if x & 1 != sign:
        x = -x % _P
    # ge25519_is_on_curve holds for every point decoded so (x² = u/v is the curve
    # equation solved for x); checked all the same, as libsodium does.
    if (y * y - x * x - 1 - _D * x * x * y * y) % _P:
        return "off the curve"
    # ge25519_has_small_order: x = 0 (orders 1 and 2), y = 0 (order 4) and
    # x = ±√-1·y (order 8).  RFC 8032 refuses x = 0 with the sign bit set as a
    # non-canonical encoding; libsodium, as of small order: refused either way.
    if x == 0 and sign:
        return "not canonical (x = 0 with the sign bit set)"
    if x == 0 or y == 0 or y * _SQRT_M1 % _P in (x, -x % _P):
        return "small order"
    # ge25519_is_on_main_subgroup: [L]P is the neutral point.
    multiple = _times_l((x, y, 1, x * y % _P))
    if multiple[0] % _P or (multiple[1] - multiple[2]) % _P:
        return "mixed order"
    return None


def usable_point(raw: bytes) -> bool:
    """Whether ``raw`` is the canonical encoding of a point of the prime-order group:
    the public half of some private key."""
    return point_defect(raw) is None
