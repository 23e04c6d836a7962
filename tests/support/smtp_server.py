"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives."""

import email
import email.policy
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.pki import CertificatePair
from tests.support.postgres import free_port


@dataclass
class Mailbox:
    """What the server accepted: (recipients, message), in arrival order."""

    received: list[tuple[list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.content
        raw = content if isinstance(content, bytes) else (content or "").encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for recipients, message in self.received if address in recipients]


@dataclass(frozen=True, slots=True)
class _Authenticator:
    login: str
    password: str

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        accepted = isinstance(data, LoginPassword) and (
            data.login.decode(),
            data.password.decode(),
        ) == (self.login, self.password)
        return AuthResult(success=accepted, handled=False)


@dataclass(frozen=True, slots=True)
class SmtpServer:
    port: int
    mailbox: Mailbox


@contextmanager
def smtp_server(
    port: int | None = None,
    *,
    tls: CertificatePair | None = None,
    credentials: tuple[str, str] | None = None,
) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 (``port``: a given one, else a free one); with
    ``tls``, STARTTLS with that certificate is required before anything else; with
    ``credentials``, AUTH with them is required (only over TLS)."""
    mailbox = Mailbox()
    chosen = port or free_port()
    options: dict[str, Any] = {}
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert, tls.key)
        options |= {"tls_context": context, "require_starttls": True}
    if credentials is not None:
        options |= {
            "authenticator": _Authenticator(*credentials), "auth_required": True,
            "auth_require_tls": True,
        }  # fmt: skip
    controller = Controller(mailbox, hostname="127.0.0.1", port=chosen, **options)
    controller.start()
    try:
        yield SmtpServer(chosen, mailbox)
    finally:
        controller.stop()
