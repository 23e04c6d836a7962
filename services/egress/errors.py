"""Failures of the egress package that callers may handle."""


class EgressError(Exception):
    """Base of every egress failure."""


class InvalidAllowListError(EgressError, ValueError):
    """``CORELINE_EGRESS_ALLOW`` cannot be read; the message says which entry and why.

    A ``ValueError`` too, so a settings validator reports it as the setting's error."""
