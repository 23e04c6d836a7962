"""Alert e-mail end to end against a real SMTP server (aiosmtpd on loopback), on
SQLite and PostgreSQL: people choose severities, the notifier mails their clinic's
alerts (an escalation as a state change of the same alert), retries a relay that is
away, obeys the egress policy, and a bad SMTP configuration stops start-up."""

import os
import ssl
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select

from schemas import SealedEvent, Severity
from schemas.platform_events import AlertRule
from services.alerts import events as alert_events
from services.alerts.conditions import Condition
from services.api import Role, create_token
from services.delivery import DeliverySettings, Notifier, NotifierOptions, RetryPolicy
from services.delivery.email_log import email_log, set_email_severities
from services.delivery.email_sender import SmtpConfig, SmtpSettings
from services.delivery.email_tables import EMAIL_TABLES
from services.egress import EgressGate, parse_allow_list
from services.eventstore import EventStore
from services.projections.read_store import ReadModelStore
from services.projector import Projector
from tests.support.accounts import Account, create_accounts, csrf_token, sign_in
from tests.support.api_client import MASTER_KEY, api_client, bearer
from tests.support.api_world import CLINIC_A, CLINIC_B
from tests.support.pki import FleetCa
from tests.support.postgres import free_port
from tests.support.smtp_server import smtp_server
from tests.support.streams import EPOCH
from transport import ConfigurationError, load

DEVICE = "HP-000771"
SENDER = "alerts@coreline.example"
LOOPBACK_ALLOWED = EgressGate(parse_allow_list("127.0.0.1"))


@pytest.fixture
def people(store_url: str) -> dict[str, Account]:
    return create_accounts(store_url)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    read_models = ReadModelStore(store_url)
    yield read_models.engine
    read_models.close()


def _user_id(engine: Engine, account: Account) -> str:
    users = EMAIL_TABLES.users
    with engine.connect() as connection:
        found: str = connection.execute(
            select(users.c.user_id).where(users.c.email == account.email)
        ).scalar_one()
    return found


def _worn_cartridge_alert(clinic: str, cartridge: str = "CT-771") -> list[SealedEvent]:
    """A needle-life alert raised at 80 % and escalated to end of life."""
    low = Condition(AlertRule.NEEDLE_LIFE_LOW, cartridge, Severity.WARNING, "81 % worn", EPOCH)
    raised = alert_events.raised(DEVICE, clinic, low)
    alert_id = str(raised.event.data.alert_id)  # type: ignore[union-attr]
    end = Condition(
        AlertRule.NEEDLE_END_OF_LIFE, cartridge, Severity.CRITICAL, "end of life", EPOCH
    )
    climbed = alert_events.escalated(
        alert_id, DEVICE, end, seq=2, prev_hash=raised.hash, at=EPOCH + timedelta(minutes=5)
    )
    return [raised, climbed]


def _notifier(
    store: EventStore,
    engine: Engine,
    port: int,
    gate: EgressGate = LOOPBACK_ALLOWED,
    clock: Callable[[], float] | None = None,
) -> Notifier:
    options = NotifierOptions(
        policy=RetryPolicy(base_s=1.0, cap_s=2.0, max_attempts=3, timeout_s=5.0),
        egress=gate,
        email=SmtpConfig("127.0.0.1", port, SENDER, starttls=False),
    )
    if clock is None:
        return Notifier(store, engine, None, MASTER_KEY, options)
    return Notifier(store, engine, None, MASTER_KEY, options, clock=clock)


def _drain(notifier: Notifier) -> None:
    while notifier.step():
        pass


def test_people_get_their_clinics_alerts_by_email_an_escalation_in_the_same_thread(
    store: EventStore, store_url: str, engine: Engine, people: dict[str, Account]
) -> None:
    """Clinic A's person gets the raise and the escalation, threaded as one alert;
    clinic B's person (every severity chosen) gets nothing of clinic A's; the
    manufacturer, who chose none, gets nothing; the e-mail log says delivered, and
    the API shows it to the manufacturer (no address in it)."""
    now = EPOCH
    set_email_severities(engine, _user_id(engine, people["clinic_a"]), ["warning", "critical"], now)
    set_email_severities(
        engine, _user_id(engine, people["clinic_b"]), ["info", "warning", "critical"], now
    )
    set_email_severities(engine, _user_id(engine, people["manufacturer"]), [], now)
    store.append(_worn_cartridge_alert(CLINIC_A))
    with smtp_server() as server:
        notifier = _notifier(store, engine, server.port)
        _drain(notifier)
        assert notifier.mailer is not None
        assert notifier.mailer.deliver_due() == 2
        mailed = server.mailbox.to(people["clinic_a"].email)
        assert len(server.mailbox.received) == 2
    raised, escalated = mailed
    assert "needle_life_low" in raised["Subject"]
    assert raised["Subject"].endswith(": raised")
    assert "needle_end_of_life" in escalated["Subject"]
    assert escalated["Subject"].endswith(": escalated")
    assert raised["X-Coreline-Alert"] == escalated["X-Coreline-Alert"]
    assert raised["References"] == escalated["References"]
    assert raised["From"] == SENDER
    with engine.connect() as connection:
        log = email_log(connection, str(escalated["X-Coreline-Alert"]))
    assert [(entry.state, entry.attempts) for entry in log] == [("delivered", 1)] * 2
    read_models = ReadModelStore(store_url)
    projector = Projector(store, read_models)
    while projector.step():
        pass
    read_models.close()
    _, token = create_token(engine, Role.MANUFACTURER, None, "qa-lead")
    with api_client(store_url) as client:
        shown = client.get(
            f"/api/v1/alerts/{escalated['X-Coreline-Alert']}/emails", headers=bearer(token)
        ).json()
    assert [(entry["state"], entry["user_id"]) for entry in shown] == [
        ("delivered", _user_id(engine, people["clinic_a"]))
    ] * 2
    assert people["clinic_a"].email not in str(shown)


def test_a_relay_that_is_away_is_tried_again_until_it_answers(
    store: EventStore, engine: Engine, people: dict[str, Account]
) -> None:
    """No server at first: the attempt fails ``unreachable`` and waits; once the
    server is up and the wait is over, the e-mail goes out."""
    set_email_severities(engine, _user_id(engine, people["clinic_a"]), ["critical"], EPOCH)
    store.append(_worn_cartridge_alert(CLINIC_A))
    port = free_port()
    moment = [EPOCH.timestamp()]
    notifier = _notifier(store, engine, port, clock=lambda: moment[0])
    _drain(notifier)
    assert notifier.mailer is not None
    assert notifier.mailer.deliver_due() == 1  # only the critical escalation
    alert_id = str(_worn_cartridge_alert(CLINIC_A)[0].event.data.alert_id)  # type: ignore[union-attr]
    with engine.connect() as connection:
        (entry,) = email_log(connection, alert_id)
    assert (entry.state, entry.attempts, entry.last_error) == ("pending", 1, "unreachable")
    with smtp_server(port) as server:
        assert notifier.mailer.deliver_due() == 0  # not due yet
        moment[0] += 3
        assert notifier.mailer.deliver_due() == 1
        assert len(server.mailbox.to(people["clinic_a"].email)) == 1
    with engine.connect() as connection:
        (entry,) = email_log(connection, alert_id)
    assert (entry.state, entry.attempts) == ("delivered", 2)


def test_mail_goes_over_starttls_with_the_relays_credentials(
    store: EventStore, engine: Engine, people: dict[str, Account], tmp_path: Path
) -> None:
    """A relay that requires STARTTLS and AUTH: the notifier upgrades, checks the
    relay's certificate against the CA it is given, logs in and sends; with a wrong
    password nothing is sent and the log says ``5xx``, never the password."""
    authority = FleetCa(tmp_path)
    pair = authority.issue("smtp-relay", ip_address="127.0.0.1")
    trusted = ssl.create_default_context(cafile=str(authority.cert))
    set_email_severities(engine, _user_id(engine, people["clinic_a"]), ["warning"], EPOCH)
    store.append(_worn_cartridge_alert(CLINIC_A)[:1])
    alert_id = str(_worn_cartridge_alert(CLINIC_A)[0].event.data.alert_id)  # type: ignore[union-attr]
    with smtp_server(tls=pair, credentials=("relay", "right-pass")) as server:
        config = SmtpConfig(
            "127.0.0.1", server.port, SENDER, starttls=True, username="relay",
            password=SecretStr("wrong-pass"), ssl_context=trusted,
        )  # fmt: skip
        options = NotifierOptions(policy=RetryPolicy(max_attempts=1), egress=LOOPBACK_ALLOWED,
                                  email=config)  # fmt: skip
        refused = Notifier(store, engine, None, MASTER_KEY, options)
        _drain(refused)
        assert refused.mailer is not None
        assert refused.mailer.deliver_due() == 1
        with engine.connect() as connection:
            (entry,) = email_log(connection, alert_id)
        assert (entry.state, entry.last_error) == ("failed", "5xx")
        assert server.mailbox.received == []
        set_email_severities(engine, _user_id(engine, people["clinic_b"]), ["warning"], EPOCH)
        store.append(_worn_cartridge_alert(CLINIC_B, "CT-772")[:1])
        right = replace(config, password=SecretStr("right-pass"))
        options = replace(options, email=right)
        accepted = Notifier(store, engine, None, MASTER_KEY, options)
        _drain(accepted)
        assert accepted.mailer is not None
        assert accepted.mailer.deliver_due() == 1
        assert len(server.mailbox.to(people["clinic_b"].email)) == 1


def test_the_egress_policy_stops_mail_to_a_relay_it_does_not_allow(
    store: EventStore, engine: Engine, people: dict[str, Account]
) -> None:
    """A loopback relay the operator did not allow: refused, failed, never retried."""
    set_email_severities(engine, _user_id(engine, people["clinic_a"]), ["warning"], EPOCH)
    store.append(_worn_cartridge_alert(CLINIC_A)[:1])
    with smtp_server() as server:
        notifier = _notifier(store, engine, server.port, gate=EgressGate())
        _drain(notifier)
        assert notifier.mailer is not None
        assert notifier.mailer.deliver_due() == 1
        assert server.mailbox.received == []
    alert_id = str(_worn_cartridge_alert(CLINIC_A)[0].event.data.alert_id)  # type: ignore[union-attr]
    with engine.connect() as connection:
        (entry,) = email_log(connection, alert_id)
    assert (entry.state, entry.last_error) == ("failed", "refused: egress policy")


def test_a_person_chooses_alert_email_through_the_api(
    store_url: str, engine: Engine, people: dict[str, Account]
) -> None:
    """GET and PUT /api/v1/me/notifications for a signed-in person; a token is
    refused 403, an unknown severity 422."""
    with api_client(store_url) as client:
        sign_in(client, people["clinic_a"])
        assert client.get("/api/v1/me/notifications").json() == {
            "email_severities": [], "email": people["clinic_a"].email,
        }  # fmt: skip
        token = csrf_token(client.get("/alerts").text)
        headers = {"X-CSRF-Token": token}
        chosen = client.put(
            "/api/v1/me/notifications", json={"email_severities": ["critical", "warning"]},
            headers=headers,
        )  # fmt: skip
        assert chosen.status_code == 200
        assert chosen.json()["email_severities"] == ["warning", "critical"]
        assert client.get("/api/v1/me/notifications").json()["email_severities"] == [
            "warning", "critical",
        ]  # fmt: skip
        wrong = client.put(
            "/api/v1/me/notifications", json={"email_severities": ["urgent"]}, headers=headers
        )
        assert wrong.status_code == 422
    _, machine = create_token(engine, Role.CLINIC, CLINIC_A, "lab-bot")
    with TestClient(client.app) as anonymous:
        refused = anonymous.get("/api/v1/me/notifications", headers=bearer(machine))
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"CORELINE_SMTP_HOST": "smtp.example.org"}, "CORELINE_SMTP_FROM"),
        ({"CORELINE_SMTP_HOST": "smtp.example.org", "CORELINE_SMTP_FROM": "not an address"},
         "alerts@coreline.example"),
        ({"CORELINE_SMTP_HOST": "smtp.example.org", "CORELINE_SMTP_FROM": SENDER,
          "CORELINE_SMTP_PASSWORD": "s3cret-pass"}, "CORELINE_SMTP_USERNAME"),
        ({"CORELINE_SMTP_HOST": "smtp.example.org", "CORELINE_SMTP_FROM": SENDER,
          "CORELINE_SMTP_USERNAME": "relay", "CORELINE_SMTP_PASSWORD": "s3cret-pass",
          "CORELINE_SMTP_STARTTLS": "false"}, "CORELINE_SMTP_STARTTLS"),
    ],
)  # fmt: skip
def test_a_bad_smtp_configuration_is_refused_naming_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], named: str
) -> None:
    """Each incomplete or unsafe SMTP setting stops the notifier's start-up with a
    message naming the variable or the expected form, never echoing the password."""
    for name in list(os.environ):
        if name.startswith("CORELINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CORELINE_WEBHOOK_MASTER_KEY", "m" * 40)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=named) as refused:
        load(DeliverySettings)
    assert "s3cret-pass" not in str(refused.value)


def test_the_smtp_password_stays_out_of_what_is_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay's password is in neither the settings' nor the config's text."""
    monkeypatch.setenv("CORELINE_SMTP_HOST", "smtp.example.org")
    monkeypatch.setenv("CORELINE_SMTP_FROM", SENDER)
    monkeypatch.setenv("CORELINE_SMTP_USERNAME", "relay")
    monkeypatch.setenv("CORELINE_SMTP_PASSWORD", "s3cret-pass")
    settings = SmtpSettings()
    config = settings.smtp()
    assert config is not None
    assert "s3cret-pass" not in f"{settings!r} {settings} {config!r} {config}"
