"""The one exception of the package: a CA, a key or a certificate that cannot be used."""


class FleetCaError(Exception):
    """The message says what is wrong and, where it can, what to do."""
