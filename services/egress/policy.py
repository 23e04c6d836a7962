"""Which addresses an outbound call may reach.  Pure.

Only public unicast addresses, unless the operator's allow-list names the address
(a network) or the host name.  Everything a request from inside the platform's
network could reach but a clinic's receiver never needs is refused: loopback,
private, shared (carrier-grade NAT), link-local, multicast, unspecified, reserved
and documentation ranges, and the cloud metadata services that hand out
credentials.  An IPv6 address that carries an IPv4 address (IPv4-mapped or
-translated, NAT64, 6to4, Teredo) reaches that IPv4 address, so it is judged as it.

The tables below are written out rather than taken from ``ipaddress``'s
``is_private`` / ``is_global``, whose answers have changed between Python releases
(IPv4-mapped addresses, multicast, ``192.0.0.0/24``); those remain a last net.
"""

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Final

from services.egress.addresses import IPAddress, LiteralHost, NamedHost, read_host
from services.egress.errors import InvalidAllowListError

IPNetwork = IPv4Network | IPv6Network

METADATA: Final = frozenset(
    ip_address(text)
    for text in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, Hetzner …
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "fd00:ec2::254",  # AWS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server (a public address)
        "169.254.0.23",  # Tencent Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
        "169.254.42.42",  # Scaleway
        "fd00:42::42",  # Scaleway over IPv6
    )
)
"""Cloud metadata services: some are not in any special range at all."""

_SPECIAL: Final[tuple[tuple[IPNetwork, str], ...]] = tuple(
    (ip_network(network), kind)
    for network, kind in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "an IETF protocol address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("::/96", "an IPv4-compatible (deprecated) address"),
        ("64:ff9b:1::/48", "a NAT64 local-use address"),
        ("100::/64", "a discard-only address"),
        ("2001::/23", "an IETF protocol address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("5f00::/16", "a segment-routing address"),
        ("fc00::/7", "a private (unique local) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local (deprecated) address"),
        ("ff00::/8", "a multicast address"),
    )
)
_IPV4_MAPPED: Final = IPv6Network("::ffff:0:0/96")
_IPV4_TRANSLATED: Final = IPv6Network("::ffff:0:0:0/96")
_NAT64: Final = IPv6Network("64:ff9b::/96")
_LOW_32_BITS: Final = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class AllowList:
    """What the operator lets outbound calls reach despite the rules above."""

    networks: tuple[IPNetwork, ...] = ()
    names: frozenset[str] = field(default_factory=frozenset)
    """Host names (lower case, no trailing dot) trusted whatever they resolve to."""

    def admits_address(self, address: IPAddress) -> bool:
        return any(
            address.version == network.version and address in network for network in self.networks
        )

    def admits_name(self, name: str) -> bool:
        return name in self.names


def parse_allow_list(text: str) -> AllowList:
    """``CORELINE_EGRESS_ALLOW``: comma-separated networks (``10.1.0.0/16``), addresses
    and host names; empty allows nothing beyond the public internet."""
    networks: list[IPNetwork] = []
    names: set[str] = set()
    for entry in (item.strip() for item in text.split(",")):
        if not entry:
            continue
        if "/" in entry:
            networks.append(_network(entry))
            continue
        host = read_host(entry.strip("[]"))
        if isinstance(host, LiteralHost):
            networks.append(ip_network(host.address))
        elif isinstance(host, NamedHost):
            names.add(host.name)
        else:
            raise InvalidAllowListError(
                f"{entry!r} is not a network (10.1.0.0/16), an address or a host name"
            )
    return AllowList(tuple(networks), frozenset(names))


def _network(entry: str) -> IPNetwork:
    try:
        return ip_network(entry)
    except ValueError:
        pass
    try:
        loose = ip_network(entry, strict=False)
    except ValueError:
        raise InvalidAllowListError(f"{entry!r} is not a network such as 10.1.0.0/16") from None
    raise InvalidAllowListError(f"{entry!r} has host bits set: did you mean {loose}?")


def refusal(address: IPAddress, allow: AllowList) -> str | None:
    """Why ``address`` may not be reached (``"a loopback address"``), or ``None``."""
    if allow.admits_address(address):
        return None
    if address in METADATA:
        return "a cloud metadata address"
    if isinstance(address, IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            form, inner = embedded
            why = refusal(inner, allow)
            return None if why is None else f"{form} of {inner}, {why}"
        teredo = address.teredo
        if teredo is not None:
            for inner in teredo:
                why = refusal(inner, allow)
                if why is not None:
                    return f"a Teredo form of {inner}, {why}"
    for network, kind in _SPECIAL:
        if address.version == network.version and address in network:
            return kind
    return _last_net(address)


def _embedded_ipv4(address: IPv6Address) -> tuple[str, IPv4Address] | None:
    """The IPv4 address a packet to ``address`` would reach, and how it is carried."""
    low = IPv4Address(int(address) & _LOW_32_BITS)
    if address in _IPV4_MAPPED:
        return "an IPv4-mapped form", low
    if address in _IPV4_TRANSLATED:
        return "an IPv4-translated form", low
    if address in _NAT64:
        return "a NAT64 form", low
    if address.sixtofour is not None:
        return "a 6to4 form", address.sixtofour
    return None


def _last_net(address: IPAddress) -> str | None:
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private or not address.is_global:
        return "a non-public address"
    return None


def describe_literal(host: str, address: IPAddress, why: str) -> str:
    """``"127.0.0.1 is a loopback address"``, naming the address an odd form stands for."""
    if host.strip("[]").lower() in {str(address), address.exploded}:
        return f"{address} is {why}"
    return f"{host} is {address}, {why}"
