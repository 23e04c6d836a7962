"""The egress policy over hostile and ordinary hosts: odd address forms read as a
resolver reads them, every non-public range refused with its reason, the operator's
allow-list admitting what it names, and nothing resolved twice."""

from collections.abc import Sequence
from ipaddress import ip_address

import pytest

from services.egress import (
    AllowList,
    Destination,
    EgressGate,
    InvalidAllowListError,
    IPAddress,
    Refused,
    Unresolvable,
    parse_allow_list,
    read_host,
)
from services.egress.addresses import LiteralHost

NAMES = {
    "hooks.clinic.test": ["93.184.215.14"],
    "rebound.test": ["127.0.0.1"],
    "metadata.google.internal": ["169.254.169.254"],
    "mixed.test": ["93.184.215.14", "10.0.0.5"],
    "v6.test": ["2606:4700::1111"],
}


def _resolve(name: str, _port: int) -> Sequence[IPAddress]:
    if name not in NAMES:
        raise OSError("no such name")
    return [ip_address(text) for text in NAMES[name]]


GATE = EgressGate(AllowList(), _resolve)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:5432/", "127.0.0.1 is a loopback address"),
        ("http://127.8.9.10/", "a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://2130706433/", "2130706433 is 127.0.0.1, a loopback address"),
        ("http://0x7f.1/", "0x7f.1 is 127.0.0.1, a loopback address"),
        ("http://0x7f000001/", "127.0.0.1, a loopback address"),
        ("http://017700000001/", "017700000001 is 127.0.0.1, a loopback address"),
        ("http://0177.0.0.1/", "127.0.0.1, a loopback address"),
        ("http://127.1/", "127.1 is 127.0.0.1, a loopback address"),
        ("http://127.0.0.1./", "127.0.0.1, a loopback address"),
        ("http://0/", "0.0.0.0, an unspecified"),
        ("http://[::]/", "an unspecified address"),
        ("http://localhost:8000/", "localhost names this machine"),
        ("http://api.localhost/", "api.localhost names this machine"),
        ("http://LOCALHOST./", "localhost names this machine"),
        ("http://rebound.test/", "rebound.test resolves to 127.0.0.1, a loopback address"),
        ("http://mixed.test/", "mixed.test resolves to 10.0.0.5, a private address"),
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://metadata.google.internal/", "resolves to 169.254.169.254, a cloud metadata"),
        ("http://[fd00:ec2::254]/", "a cloud metadata address"),
        ("http://100.100.100.200/", "a cloud metadata address"),
        ("http://168.63.129.16/", "a cloud metadata address"),
        ("http://10.1.2.3/", "a private address"),
        ("http://172.16.0.1/", "a private address"),
        ("http://192.168.1.1/", "a private address"),
        ("http://100.64.0.1/", "a shared (carrier-grade NAT) address"),
        ("http://169.254.10.1/", "a link-local address"),
        ("http://[fe80::1]/", "a link-local address"),
        ("http://[fc00::1]/", "a private (unique local) address"),
        ("http://224.0.0.1/", "a multicast address"),
        ("http://[ff02::1]/", "a multicast address"),
        ("http://240.0.0.1/", "a reserved address"),
        ("http://255.255.255.255/", "a reserved address"),
        ("http://192.0.2.1/", "a documentation address"),
        ("http://[::ffff:127.0.0.1]/", "an IPv4-mapped form of 127.0.0.1, a loopback address"),
        ("http://[::ffff:a9fe:a9fe]/", "IPv4-mapped form of 169.254.169.254, a cloud metadata"),
        ("http://[::ffff:0:10.0.0.1]/", "an IPv4-translated form of 10.0.0.1, a private address"),
        ("http://[::127.0.0.1]/", "an IPv4-compatible (deprecated) address"),
        ("http://[64:ff9b::127.0.0.1]/", "a NAT64 form of 127.0.0.1, a loopback address"),
        ("http://[64:ff9b:1::a00:1]/", "a NAT64 local-use address"),
        ("http://[2002:7f00:1::]/", "a 6to4 form of 127.0.0.1, a loopback address"),
        ("http://[2002:a9fe:a9fe::1]/", "a 6to4 form of 169.254.169.254, a cloud metadata"),
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "a Teredo form of 192.0.2.45"),
        ("http://[fe80::1%25eth0]/", "carries an interface zone"),
        ("http://1.2.3.256/", "neither a valid IPv4 address nor a host name"),
        ("http://08.1/", "neither a valid IPv4 address nor a host name"),
        ("http://1.2.3.4.5/", "neither a valid IPv4 address nor a host name"),
        ("http://under_score-.test/", "not a valid host name"),
        ("ftp://hooks.clinic.test/", "ftp is not http or https"),
        ("gopher://127.0.0.1:6379/_INFO", "gopher is not http or https"),
    ],
)
def test_hostile_hosts_are_refused_naming_why(url: str, reason: str) -> None:
    """Each URL that leads inside the platform's network, however written, is refused
    with a reason that names the address and its kind."""
    verdict = GATE.check(url)
    assert isinstance(verdict, Refused), verdict
    assert reason in verdict.reason


@pytest.mark.parametrize(
    ("url", "address", "host", "port", "target"),
    [
        ("https://hooks.clinic.test/alerts?x=1", "93.184.215.14", "hooks.clinic.test", 443,
         "/alerts?x=1"),
        ("http://HOOKS.clinic.test.:8080", "93.184.215.14", "hooks.clinic.test", 8080, "/"),
        ("https://v6.test/", "2606:4700::1111", "v6.test", 443, "/"),
        ("http://8.8.8.8/", "8.8.8.8", "8.8.8.8", 80, "/"),
        ("http://134744072/", "8.8.8.8", "8.8.8.8", 80, "/"),
        ("http://[2606:4700::1111]/", "2606:4700::1111", "2606:4700::1111", 80, "/"),
        ("http://[::ffff:8.8.8.8]/", "::ffff:808:808", "::ffff:808:808", 80, "/"),
        ("http://[64:ff9b::8.8.8.8]/", "64:ff9b::808:808", "64:ff9b::808:808", 80, "/"),
    ],
)  # fmt: skip
def test_public_destinations_are_allowed_to_the_checked_address(
    url: str, address: str, host: str, port: int, target: str
) -> None:
    """A public address (or a name resolving only to public addresses) passes, with the
    address to connect to and the name to present for Host and TLS."""
    assert GATE.check(url) == Destination(
        url.split(":", maxsplit=1)[0], host, port, target, ip_address(address)
    )


def test_a_name_that_does_not_resolve_is_unresolvable_not_refused() -> None:
    """No answer from the resolver is reported as such: nothing is reached through it."""
    assert isinstance(GATE.check("https://nowhere.test/hook"), Unresolvable)


def test_the_name_is_resolved_once_per_check() -> None:
    """One check asks the resolver once; the destination carries the address it gave,
    so the connection never asks again (what a rebinding attacker would change)."""
    answers = [["93.184.215.14"], ["127.0.0.1"]]
    asked: list[str] = []

    def rebinding(name: str, _port: int) -> Sequence[IPAddress]:
        asked.append(name)
        return [ip_address(text) for text in answers.pop(0)]

    gate = EgressGate(AllowList(), rebinding)
    first = gate.check("https://rebind.test/")
    assert isinstance(first, Destination)
    assert first.address == ip_address("93.184.215.14")
    assert asked == ["rebind.test"]
    assert isinstance(gate.check("https://rebind.test/"), Refused)


@pytest.mark.parametrize(
    ("allow", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080/hook"),
        ("127.0.0.0/8", "http://2130706433/"),
        ("10.20.0.0/16, relay.internal", "http://10.20.3.4/"),
        ("127.0.0.1/32", "http://[::ffff:127.0.0.1]/"),
        ("rebound.test", "http://rebound.test/"),
        ("::1", "http://[::1]/"),
        ("169.254.169.254", "http://169.254.169.254/"),
    ],
)
def test_the_allow_list_admits_what_it_names(allow: str, url: str) -> None:
    """An address inside an allowed network, or a host name the list names, passes
    although it is not public."""
    assert isinstance(EgressGate(parse_allow_list(allow), _resolve).check(url), Destination)


def test_the_allow_list_admits_nothing_beyond_what_it_names() -> None:
    """Allowing one network or name leaves every other non-public address refused."""
    gate = EgressGate(parse_allow_list("127.0.0.2/32,relay.internal"), _resolve)
    assert isinstance(gate.check("http://127.0.0.1/"), Refused)
    assert isinstance(gate.check("http://rebound.test/"), Refused)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.1/8", "has host bits set: did you mean 10.0.0.0/8?"),
        ("10.0.0.0/33", "is not a network"),
        ("1.2.3.256", "is not a network"),
        ("bad host!", "is not a network"),
    ],
)
def test_an_unreadable_allow_list_names_the_entry(text: str, message: str) -> None:
    """A bad entry is refused with the entry and what would work."""
    with pytest.raises(InvalidAllowListError, match=message):
        parse_allow_list(text)


def test_an_empty_allow_list_allows_nothing_extra() -> None:
    """Blank and empty entries add nothing."""
    assert parse_allow_list(" , ") == AllowList()


@pytest.mark.parametrize(
    ("host", "address"),
    [("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("017700000001", "127.0.0.1"),
     ("0x7f.0.0.0x1", "127.0.0.1"), ("10.1", "10.0.0.1"), ("192.168.257", "192.168.1.1"),
     ("0xa9fea9fe", "169.254.169.254"), ("0", "0.0.0.0")],  # noqa: S104 - read, not bound
)  # fmt: skip
def test_numeric_hosts_are_read_as_inet_aton_reads_them(host: str, address: str) -> None:
    """Decimal, octal, hexadecimal and short dotted forms are the addresses they stand for."""
    assert read_host(host) == LiteralHost(ip_address(address))
