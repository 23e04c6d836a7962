"""The verifier's one exception family: every failed check is a value of it, with a
message that names what failed and where."""


class VerifyError(Exception):
    """Base of every error the verifier raises on purpose."""


class NotCanonicalError(VerifyError):
    """Bytes that are not the RFC 8785 canonical form of their JSON value."""


class CheckFailed(VerifyError):  # noqa: N818 - reads as the verdict it is
    """A check of the bundle failed; the message names the first failure, such as
    ``HP-000014 seq 7: hash does not match its bytes``."""


class BundleUnreadable(VerifyError):  # noqa: N818 - reads as the verdict it is
    """The bundle is not a well-formed ``coreline-evidence/v1`` file."""
