"""The manufacturer's enrolment and decommissioning screens in a real browser: a claim
issued from the form is shown once, the device enrols with it and the list shows its
certificate's expiry, a certificate is revoked and the device decommissioned from
its page (each refusal of bad input precise), and the device page shows its identity."""

from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Page, expect

from fleet_ca import ensure_fleet_ca
from services.eventstore import DatabaseUrl, open_event_store
from tests.browser.conftest import Dashboard, reload_until
from tests.browser.test_dashboard import log_in
from tests.support import api_world
from tests.support.api_world import World, build_world
from tests.support.identity import Handpiece

DEVICE = "HP-000101"
NEW_DEVICE = "HP-000555"
SERIAL = "SN-2026-000101"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The dashboard's two-clinic world, with a fleet CA where the API looks for it
    (beside the SQLite file)."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('enrolment') / 'coreline.db'}"
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_world, "START", datetime.combine(yesterday, clock_time(8), UTC))
        built = build_world(database_url)
    ensure_fleet_ca(Path(DatabaseUrl.parse(database_url).sqlite_path).parent / "fleet-ca")
    return built


def _registry(dashboard: Dashboard, device_id: str) -> list[dict[str, Any]]:
    store = open_event_store(dashboard.world.database_url)
    try:
        return [orjson.loads(event.body) for event in store.read_stream(f"registry:{device_id}")]
    finally:
        store.close()


def test_a_claim_enrolment_revocation_and_decommissioning(page: Page, dashboard: Dashboard) -> None:
    """Claim from the form (the secret shown once), enrol the handpiece with it, see the
    certificate's expiry in the list and on the device page, revoke the certificate,
    decommission the device: each recorded with the person as author."""
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/manage/identity"))
    form = page.locator("[data-testid=claim-form]")
    form.locator("input[name=device_id]").fill(DEVICE)
    form.locator("input[name=serial]").fill(SERIAL)
    form.locator("button").click()
    secret = page.locator("[data-testid=claim-secret]").inner_text()
    assert secret.startswith("clm_")
    claims = [event for event in _registry(dashboard, DEVICE)
              if event["type"] == "device.claim_issued"]  # fmt: skip
    assert claims[-1]["data"]["issued_by"].startswith("Mara Fleet <manufacturer@people.example>")
    page.goto(dashboard.url("/manage/identity"))
    assert secret not in page.content()

    handpiece = Handpiece(DEVICE, SERIAL)
    enrolled = httpx.post(dashboard.url("/api/v1/enrolment"), json=handpiece.enrolment(secret))
    assert enrolled.status_code == 201, enrolled.text
    fingerprint = enrolled.json()["fingerprint"]
    not_after = enrolled.json()["not_after"][:10]

    page.goto(dashboard.url("/manage/identity"))
    row = page.locator(f"tr[data-device='{DEVICE}']")
    expect(row.locator("[data-testid=expires]")).to_contain_text(not_after)
    expect(row).to_contain_text("used")
    expect(row).to_contain_text(fingerprint[:16])

    reload_until(page, dashboard.url(f"/devices/{DEVICE}"), "[data-testid=identity]")
    identity = page.locator("[data-testid=identity]")
    expect(identity).to_contain_text(SERIAL)
    expect(identity.locator("[data-testid=certificate]")).to_contain_text(fingerprint[:16])

    page.goto(dashboard.url(f"/manage/identity/{DEVICE}"))
    certificate = page.locator(f"tr[data-fingerprint='{fingerprint}']")
    certificate.locator("input[name=reason]").fill("handpiece lost in transit")
    certificate.locator("button").click()
    expect(page.locator("[data-testid=done]")).to_contain_text("Certificate revoked")
    expect(page.locator(f"tr[data-fingerprint='{fingerprint}']")).to_contain_text("revoked")

    retire = page.locator("[data-testid=decommission-form]")
    retire.locator("input[name=reason]").fill("returned, scrapped")
    retire.locator("input[name=confirm]").fill("HP-000102")
    retire.locator("button").click()
    expect(page.locator("[data-testid=problem]")).to_contain_text(f"Type {DEVICE} to confirm")
    retire = page.locator("[data-testid=decommission-form]")
    retire.locator("input[name=reason]").fill("returned, scrapped")
    retire.locator("input[name=confirm]").fill(DEVICE)
    retire.locator("button").click()
    expect(page.locator("[data-testid=done]")).to_contain_text("Decommissioned")
    expect(page.locator("[data-testid=decommissioned]")).to_be_visible()
    last = _registry(dashboard, DEVICE)[-1]
    assert last["type"] == "device.decommissioned"
    assert last["data"]["decommissioned_by"].startswith("Mara Fleet <manufacturer@people.example>")

    page.goto(dashboard.url(f"/devices/{DEVICE}"))
    expect(page.locator("[data-testid=identity] [data-testid=decommissioned]")).to_be_visible()


def test_a_new_device_needs_its_model_and_bad_input_is_named(
    page: Page, dashboard: Dashboard
) -> None:
    """A device id outside the pattern and a new device without its model are refused
    saying so; with the model, the device is registered and its claim shown."""
    log_in(page, dashboard, "manufacturer")
    page.goto(dashboard.url("/manage/identity"))
    form = page.locator("[data-testid=claim-form]")
    form.locator("input[name=device_id]").fill("hp-lower")
    form.locator("input[name=serial]").fill("SN-1")
    form.locator("button").click()
    expect(page.locator("[data-testid=problem]")).to_contain_text("Device id 'hp-lower'")

    form = page.locator("[data-testid=claim-form]")
    form.locator("input[name=device_id]").fill(NEW_DEVICE)
    form.locator("input[name=serial]").fill("SN-555")
    form.locator("button").click()
    expect(page.locator("[data-testid=problem]")).to_contain_text("give its model")
    assert _registry(dashboard, NEW_DEVICE) == []

    form = page.locator("[data-testid=claim-form]")
    form.locator("input[name=device_id]").fill(NEW_DEVICE)
    form.locator("input[name=serial]").fill("SN-555")
    form.locator("input[name=model]").fill("CX-3")
    form.locator("button").click()
    expect(page.locator("[data-testid=claim]")).to_contain_text(f"Claim for {NEW_DEVICE}")
    assert [event["type"] for event in _registry(dashboard, NEW_DEVICE)] == [
        "device.registered", "device.claim_issued",
    ]  # fmt: skip


def test_only_the_manufacturer_sees_the_enrolment_screens(page: Page, dashboard: Dashboard) -> None:
    """A clinic is refused the screens (403) and has no link to them."""
    log_in(page, dashboard, "clinic_a")
    assert page.locator("a[href='/manage/identity']").count() == 0
    response = page.goto(dashboard.url("/manage/identity"))
    assert response is not None
    assert response.status == 403
