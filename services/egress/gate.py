"""``EgressGate``: from a URL to the one address a call may connect to, or the
reason it may not.

The name is resolved once, here, and every address it resolves to is judged: one
refused address refuses the call, so a name cannot mix a public address with an
internal one and hope the connection picks the latter.  The caller connects to the
``Destination``'s address and to nothing else, so an answer that changes between
this check and the connection (DNS rebinding) is never looked up at all.
"""

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import SplitResult, urlsplit

from services.egress.addresses import InvalidHost, IPAddress, LiteralHost, read_host
from services.egress.policy import AllowList, describe_literal, refusal
from services.egress.resolver import Resolve, system_resolve

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Destination:
    """A call that may go ahead, to ``address`` only."""

    scheme: str
    host: str
    """For the ``Host`` header and TLS (SNI and certificate): the URL's own name, or
    the address's canonical form when the URL wrote an address."""
    port: int
    target: str
    """Path and query."""
    address: IPAddress


@dataclass(frozen=True, slots=True)
class Refused:
    """The policy forbids the call; ``reason`` says why, naming the address."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unresolvable:
    """The name does not resolve (now): nothing to connect to, nothing refused."""

    reason: str


Verdict = Destination | Refused | Unresolvable


@dataclass(frozen=True, slots=True)
class EgressGate:
    allow: AllowList = field(default_factory=AllowList)
    resolve: Resolve = system_resolve

    def check(self, url: str) -> Verdict:
        """Where a request to ``url`` may connect, resolving its host once."""
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS:
            return Refused(f"{parts.scheme or 'a URL without a scheme'!s} is not http or https")
        try:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
        except ValueError:
            return Refused("the URL's port is not a number from 1 to 65535")
        host = read_host(parts.hostname or "")
        if isinstance(host, InvalidHost):
            return Refused(host.reason)
        if isinstance(host, LiteralHost):
            why = refusal(host.address, self.allow)
            if why is not None:
                return Refused(describe_literal(parts.hostname or "", host.address, why))
            return _destination(parts, str(host.address), port, host.address)
        return self._named(parts, host.name, port)

    def _named(self, parts: SplitResult, name: str, port: int) -> Verdict:
        trusted = self.allow.admits_name(name)
        if not trusted and (name == "localhost" or name.endswith(".localhost")):
            return Refused(f"{name} names this machine (a loopback address)")
        try:
            addresses = list(self.resolve(name, port))
        except (OSError, UnicodeError) as error:
            return Unresolvable(f"{name} does not resolve ({type(error).__name__})")
        if not addresses:
            return Unresolvable(f"{name} does not resolve")
        if not trusted:
            for address in addresses:
                why = refusal(address, self.allow)
                if why is not None:
                    return Refused(f"{name} resolves to {address}, {why}")
        return _destination(parts, name, port, addresses[0])


def _destination(parts: SplitResult, host: str, port: int, address: IPAddress) -> Destination:
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Destination(parts.scheme, host, port, target, address)
