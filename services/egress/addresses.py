"""Host names as resolvers read them.  Pure.

``inet_aton`` (and so ``getaddrinfo``, ``curl`` and every browser's URL parser)
reads ``2130706433``, ``0x7f.1``, ``017700000001`` and ``127.1`` as 127.0.0.1: one to
four parts, each decimal, octal (a leading ``0``) or hexadecimal (``0x``), the last
part filling the bytes the others left.  A policy that compared host strings would
judge those as names; reading them as the resolver does judges them as the
addresses they are, and a host whose last label is numeric but is no valid address
(``1.2.3.256``, ``08.1``) is refused outright rather than handed to a resolver that
might read it some other way.
"""

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final

IPAddress = IPv4Address | IPv6Address

_HEX_PART: Final = re.compile(r"0x[0-9a-f]*\Z")
_OCTAL_PART: Final = re.compile(r"0[0-7]*\Z")
_DECIMAL_PART: Final = re.compile(r"[1-9][0-9]*\Z")
_NUMERIC_LABEL: Final = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)\Z")
_NAME_LABEL: Final = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")
_MAX_NAME_LENGTH: Final = 253


@dataclass(frozen=True, slots=True)
class LiteralHost:
    """A host that is an address, whatever way it was written."""

    address: IPAddress


@dataclass(frozen=True, slots=True)
class NamedHost:
    """A host name to resolve: lower case, ASCII (IDNA), no trailing dot."""

    name: str


@dataclass(frozen=True, slots=True)
class InvalidHost:
    reason: str


Host = LiteralHost | NamedHost | InvalidHost


def read_host(host: str) -> Host:
    """What ``host`` (a URL's host, brackets removed) names, as a resolver reads it."""
    text = host.strip().lower()
    if not text:
        return InvalidHost("the URL names no host")
    if ":" in text:
        return _ipv6(text)
    try:
        ascii_name = text.encode("idna").decode("ascii")
    except UnicodeError:
        return InvalidHost(f"{host!r} is not a valid host name")
    labels = ascii_name.removesuffix(".").split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        address = _ipv4(labels)
        if address is None:
            return InvalidHost(f"{host!r} is neither a valid IPv4 address nor a host name")
        return LiteralHost(address)
    if len(ascii_name) > _MAX_NAME_LENGTH or not all(_NAME_LABEL.match(label) for label in labels):
        return InvalidHost(f"{host!r} is not a valid host name")
    return NamedHost(".".join(labels))


def _ipv6(text: str) -> Host:
    if "%" in text:
        # A zone names an interface of this machine: never a place on the internet.
        return InvalidHost(f"{text!r} carries an interface zone, which outbound calls may not name")
    try:
        return LiteralHost(IPv6Address(text))
    except ValueError:
        return InvalidHost(f"{text!r} is not a valid IPv6 address")


def _ipv4(labels: list[str]) -> IPv4Address | None:
    """``inet_aton``'s reading of dotted parts, or ``None`` when it refuses them."""
    if not 1 <= len(labels) <= 4:
        return None
    parts = [_number(label) for label in labels]
    if any(part is None for part in parts):
        return None
    numbers = [part for part in parts if part is not None]
    *leading, last = numbers
    if any(part > 0xFF for part in leading) or last >= 1 << (8 * (5 - len(numbers))):
        return None
    value = last
    for index, part in enumerate(leading):
        value |= part << (8 * (3 - index))
    return IPv4Address(value)


def _number(label: str) -> int | None:
    if _HEX_PART.match(label):
        return int(label[2:] or "0", 16)
    if _OCTAL_PART.match(label):
        return int(label, 8)
    if _DECIMAL_PART.match(label):
        return int(label)
    return None
