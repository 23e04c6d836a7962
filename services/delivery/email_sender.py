"""Alert e-mail, the sending side: the SMTP settings, the message an alert notice
becomes, one SMTP attempt through the egress policy, and the worker that sends what
the e-mail log holds, with the webhooks' retry policy.

The relay is the operator's (``CORELINE_SMTP_HOST``), yet the connection still goes
through the egress gate (docs/egress-policy.md): a relay on a private network must
be named in ``CORELINE_EGRESS_ALLOW`` like any other internal destination, and the
connection goes to the very address the gate judged, never to a second lookup.
Secrets never reach a log: the password is a ``SecretStr`` and an attempt's outcome
is a failure word, never the server's reply.
"""

import logging
import random
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Annotated, Final, Self

import orjson
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Engine

from services.delivery.email_log import (
    DueEmail,
    claim_email,
    due_emails,
    next_email_due_at,
    record_email_outcome,
)
from services.delivery.moments import utc_moment
from services.delivery.retry import (
    REFUSED_BY_POLICY,
    Delivered,
    GaveUp,
    Outcome,
    PostResult,
    RetryPolicy,
    after_attempt,
)
from services.egress import Destination, EgressGate, Refused, Unresolvable

log = logging.getLogger(__name__)

_LEASE_MARGIN_S: Final = 30.0


class SmtpSettings(BaseSettings):
    """``CORELINE_SMTP_*``: where alert e-mail goes out.  No host: no e-mail."""

    model_config = SettingsConfigDict(env_prefix="CORELINE_", extra="ignore")

    smtp_host: str | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    smtp_from: str | None = None
    """The sender address, e.g. ``alerts@coreline.example``."""
    smtp_starttls: bool = True
    """Upgrade to TLS before authenticating (the relay's certificate is verified)."""
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None

    @field_validator("smtp_from")
    @classmethod
    def _an_address(cls, value: str | None) -> str | None:
        if value is not None and (value.count("@") != 1 or any(c.isspace() for c in value)):
            raise ValueError("must be one e-mail address, e.g. alerts@coreline.example")
        return value

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.smtp_host is None:
            return self
        if self.smtp_from is None:
            raise ValueError("CORELINE_SMTP_FROM is required when CORELINE_SMTP_HOST is set")
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("CORELINE_SMTP_USERNAME and CORELINE_SMTP_PASSWORD go together")
        if self.smtp_password is not None and not self.smtp_starttls:
            raise ValueError(
                "CORELINE_SMTP_PASSWORD needs CORELINE_SMTP_STARTTLS=true: a password is "
                "never sent in clear"
            )
        return self

    def smtp(self) -> "SmtpConfig | None":
        if self.smtp_host is None or self.smtp_from is None:
            return None
        return SmtpConfig(
            self.smtp_host, self.smtp_port, self.smtp_from, self.smtp_starttls,
            self.smtp_username, self.smtp_password,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    starttls: bool = True
    username: str | None = None
    password: SecretStr | None = None
    ssl_context: ssl.SSLContext | None = None
    """Whom the relay's certificate must chain to; the system's CAs by default."""

    def __repr__(self) -> str:  # the password stays out of any log line
        return f"SmtpConfig({self.host}:{self.port}, from {self.sender})"


def compose(notice_json: bytes, sender: str, to: str) -> EmailMessage:
    """The e-mail of one alert notice.  Every notice of an alert refers to the same
    ``<alert_id@coreline>``, so a mail client threads an alert's raise, escalations
    and resolution together."""
    notice = orjson.loads(notice_json)
    message = EmailMessage()
    state, severity = notice["state"], notice["severity"]
    message["Subject"] = f"[Coreline] {severity} {notice['rule']} on {notice['device_id']}: {state}"
    message["From"] = sender
    message["To"] = to
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(idstring=notice["event_id"], domain="coreline")
    thread = f"<{notice['alert_id']}@coreline>"
    message["References"] = thread
    message["In-Reply-To"] = thread
    message["X-Coreline-Alert"] = notice["alert_id"]
    message["X-Coreline-Event"] = notice["event_id"]
    lines = [
        notice["message"],
        "",
        f"alert     {notice['alert_id']}",
        f"state     {state} at {notice['at']} (platform time)",
        f"rule      {notice['rule']} ({severity})",
        f"device    {notice['device_id']}, subject {notice['subject']}",
        f"clinic    {notice['clinic_id']}",
    ]
    message.set_content("\n".join(lines) + "\n")
    return message


SendEmail = Callable[[str, EmailMessage, float], PostResult]
"""``(to, message, timeout_s) -> PostResult``: one attempt (status 250 on success)."""


def smtp_sender(config: SmtpConfig, gate: EgressGate) -> SendEmail:
    def send(to: str, message: EmailMessage, timeout_s: float) -> PostResult:
        # The gate judges hosts of URLs; the scheme only picks a default port, which
        # the relay's own port replaces.
        verdict = gate.check(f"https://{config.host}:{config.port}/")
        if isinstance(verdict, Refused):
            return PostResult(None, REFUSED_BY_POLICY, verdict.reason)
        if isinstance(verdict, Unresolvable):
            return PostResult(None, "unreachable", verdict.reason)
        return _send(config, verdict, to, message, timeout_s)

    return send


class _PinnedSmtp(smtplib.SMTP):
    """SMTP to the address the egress gate judged, under the relay's own name (for
    STARTTLS's server name and certificate check): ``smtplib`` connects while it is
    built, so the address is in place before, and every socket goes to it."""

    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        self._address = address
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((self._address, port), timeout)


def _send(
    config: SmtpConfig, destination: Destination, to: str, message: EmailMessage, timeout_s: float
) -> PostResult:
    where = f"{destination.address}:{config.port}"
    try:
        with _PinnedSmtp(str(destination.address), config.host, config.port, timeout_s) as smtp:
            if config.starttls:
                smtp.starttls(context=config.ssl_context or ssl.create_default_context())
            if config.username is not None and config.password is not None:
                smtp.login(config.username, config.password.get_secret_value())
            smtp.send_message(message, from_addr=config.sender, to_addrs=[to])
    except TimeoutError:
        return PostResult(None, "timeout", f"no answer from {where}")
    except ssl.SSLError:
        return PostResult(None, "tls failed", f"TLS with {where} failed")
    except smtplib.SMTPAuthenticationError as error:
        return PostResult(error.smtp_code, None, f"{where} refused the credentials")
    except smtplib.SMTPResponseException as error:
        return PostResult(error.smtp_code, None, f"{where} answered {error.smtp_code}")
    except smtplib.SMTPRecipientsRefused:
        return PostResult(550, None, f"{where} refused the recipient")
    except (smtplib.SMTPException, OSError):
        return PostResult(None, "unreachable", f"no SMTP session with {where}")
    return PostResult(250)


class EmailWorker:
    """Sends the due e-mails of the log, one attempt each, with ``policy``'s retries."""

    def __init__(
        self,
        engine: Engine,
        config: SmtpConfig,
        policy: RetryPolicy,
        send: SendEmail | None = None,
        clock: Callable[[], float] = time.time,
        gate: EgressGate | None = None,
    ) -> None:
        self._engine = engine
        self._config = config
        self.policy = policy
        self._send = send or smtp_sender(config, gate or EgressGate())
        self._clock = clock
        self._rng = random.Random()  # noqa: S311 - jitter needs spread, not secrecy
        self.wake = threading.Event()

    def deliver_due(self) -> int:
        now = utc_moment(self._clock())
        lease_until = now + timedelta(seconds=self.policy.timeout_s + _LEASE_MARGIN_S)
        sent = 0
        for email in due_emails(self._engine, now, limit=20):
            if email.attempts >= self.policy.max_attempts:
                no_answer = GaveUp(None, "no answer was recorded for the last attempt")
                record_email_outcome(self._engine, email.id, no_answer, now)
            elif claim_email(self._engine, email, lease_until):
                self._attempt(email)
                sent += 1
        return sent

    def run(self, stop: threading.Event, idle_s: float = 5.0) -> None:
        while not stop.is_set():
            try:
                if self.deliver_due():
                    continue
                due_at = next_email_due_at(self._engine)
                pause = idle_s if due_at is None else max(0.0, due_at.timestamp() - self._clock())
                pause = min(pause, idle_s)
            except Exception:  # the database is away: keep going
                log.warning("alert e-mail paused: database unavailable", exc_info=True)
                pause = idle_s
            if self.wake.wait(pause):
                self.wake.clear()

    def _attempt(self, email: DueEmail) -> None:
        attempt = email.attempts + 1
        message = compose(email.payload, self._config.sender, email.address)
        result = self._send(email.address, message, self.policy.timeout_s)
        # 2xx and 3xx are SMTP's successes (250 accepted); anything else is a failure.
        outcome: Outcome
        if result.status is not None and 200 <= result.status < 400:
            outcome = Delivered(result.status)
        else:
            word = result.summary if result.status is None else f"{result.status // 100}xx"
            failed = PostResult(None, word, result.detail)
            outcome = after_attempt(self.policy, attempt, failed, self._rng)
        record_email_outcome(self._engine, email.id, outcome, utc_moment(self._clock()))
        if result.detail is not None:
            log.warning("alert e-mail to user %s: %s", email.user_id, result.detail)
        if isinstance(outcome, Delivered):
            log.info("alert e-mail to user %s: sent %s", email.user_id, email.event_id)
