"""The one place a host name is looked up: the system resolver (``getaddrinfo``).

Callers take a ``Resolve`` so that a test can answer for a name (a resolver that
changes its answer between calls, as a DNS-rebinding attacker's would)."""

import socket
from collections.abc import Callable, Sequence
from ipaddress import ip_address

from services.egress.addresses import IPAddress

Resolve = Callable[[str, int], Sequence[IPAddress]]
"""``(host name, port) -> addresses``, in the order to try them; empty or ``OSError``:
the name does not resolve."""


def system_resolve(name: str, port: int) -> list[IPAddress]:
    found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonical, sockaddr in found:
        # An IPv6 sockaddr may carry a zone ("fe80::1%eth0"); the zone is dropped, so
        # such an address is judged (and refused) as the link-local address it is.
        address = ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses
