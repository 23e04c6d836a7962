"""Egress: the policy every outbound call obeys, and the client that obeys it.

``EgressGate(allow, resolve).check(url)`` resolves the URL's host once and returns
the ``Destination`` to connect to (a public address, or one the operator's
``AllowList`` names), or why not (``Refused``, ``Unresolvable``).  ``post`` sends a
request to that very address, bounded in time and size, following no redirect.
``refusal`` is the pure rule; ``parse_allow_list`` reads ``CORELINE_EGRESS_ALLOW``.
"""

from services.egress.addresses import IPAddress, read_host
from services.egress.client import Answer, Failure, Limits, NoAnswer, post, send
from services.egress.errors import EgressError, InvalidAllowListError
from services.egress.gate import Destination, EgressGate, Refused, Unresolvable, Verdict
from services.egress.policy import METADATA, AllowList, parse_allow_list, refusal
from services.egress.resolver import Resolve, system_resolve
from services.egress.settings import EgressSettings

__all__ = [
    "METADATA",
    "AllowList",
    "Answer",
    "Destination",
    "EgressError",
    "EgressGate",
    "EgressSettings",
    "Failure",
    "IPAddress",
    "InvalidAllowListError",
    "Limits",
    "NoAnswer",
    "Refused",
    "Resolve",
    "Unresolvable",
    "Verdict",
    "parse_allow_list",
    "post",
    "read_host",
    "refusal",
    "send",
    "system_resolve",
]
