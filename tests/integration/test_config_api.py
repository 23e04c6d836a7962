"""The configuration and command API: who may set which layer, within which bounds;
commands sent with their author, or refused with a precise 4xx that records nothing;
each device's desired, reported and refused configuration and the fleet's
convergence, once the delivery loop has folded (here stepped in-process, no broker)."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from services.api import Role, create_token
from services.config_delivery import ConfigDelivery
from services.config_delivery.database import open_engine
from services.eventstore import open_event_store
from services.projections.read_store import ReadModelStore
from tests.support.api_client import api_client, bearer
from tests.support.api_world import project

DEVICE = "HP-000501"
OTHER = "HP-000502"


@dataclass
class Api:
    url: str
    client: TestClient
    tokens: dict[str, str]

    def call(self, method: str, path: str, who: str, body: Any = None) -> Any:
        return self.client.request(method, f"/api/v1{path}", headers=bearer(self.tokens[who]),
                                   json=body)  # fmt: skip

    def stream(self, stream_id: str) -> list[str]:
        store = open_event_store(self.url)
        try:
            return [event.type for event in store.read_stream(stream_id)]
        finally:
            store.close()

    def deliver(self) -> None:
        """One pass of the configuration delivery loop (no broker: it only folds)."""
        store, engine = open_event_store(self.url), open_engine(self.url)
        try:
            delivery = ConfigDelivery(store, engine, None)
            while delivery.step():
                pass
        finally:
            store.close()
            engine.dispose()


@pytest.fixture(params=["sqlite_url", "postgres_url"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    """The API over a fresh database with DEVICE at clinic-7 and OTHER at clinic-9."""
    url: str = request.getfixturevalue(request.param)
    read_models = ReadModelStore(url)
    tokens = {
        name: create_token(read_models.engine, role, clinic, name)[1]
        for name, role, clinic in (
            ("fleet-ops", Role.MANUFACTURER, None),
            ("front-desk", Role.CLINIC, "clinic-7"),
            ("quality", Role.AUDITOR, None),
        )
    }
    read_models.close()
    with api_client(url) as client:
        platform = Api(url, client, tokens)
        for device_id, clinic in ((DEVICE, "clinic-7"), (OTHER, "clinic-9")):
            registered = platform.call("POST", "/devices", "fleet-ops",
                                       {"device_id": device_id, "model": "CL-200",
                                        "clinic_id": clinic})  # fmt: skip
            assert registered.status_code == 202, registered.text
        project(url)
        yield platform


def test_unknown_command_and_bad_arguments_are_refused_and_nothing_is_recorded(api: Api) -> None:
    """422 naming the commands there are, the argument at fault, or the expiry's
    range; the device's command stream stays empty."""
    unknown = api.call("POST", f"/devices/{DEVICE}/commands", "fleet-ops", {"cmd": "explode"})
    assert unknown.status_code == 422
    assert "unknown command 'explode': the commands are lock, unlock, reboot" in unknown.text
    bad_args = api.call("POST", f"/devices/{DEVICE}/commands", "fleet-ops",
                        {"cmd": "resend", "args": {"from_seq": 9, "to_seq": 3}})  # fmt: skip
    assert bad_args.status_code == 422
    assert "to_seq 3 is below from_seq 9" in bad_args.json()["detail"]
    extra = api.call("POST", f"/devices/{DEVICE}/commands", "fleet-ops",
                     {"cmd": "reboot", "args": {"now": True}})  # fmt: skip
    assert extra.status_code == 422
    assert "args of reboot: now" in extra.json()["detail"]
    forever = api.call("POST", f"/devices/{DEVICE}/commands", "fleet-ops",
                       {"cmd": "lock", "expires_in_s": 10**9})  # fmt: skip
    assert forever.status_code == 422
    assert "outside 10..604800" in forever.json()["detail"]
    assert api.stream(f"commands:{DEVICE}") == []


def test_a_command_is_recorded_with_its_author_and_shown_pending(api: Api) -> None:
    """202 with the command's id, expiry and author; listed pending once folded."""
    sent = api.call("POST", f"/devices/{DEVICE}/commands", "fleet-ops",
                    {"cmd": "override_interlock", "args": {"interlock": "locked"},
                     "expires_in_s": 600})  # fmt: skip
    assert sent.status_code == 202, sent.text
    command = sent.json()
    assert command["state"] == "pending"
    assert "fleet-ops" in command["issued_by"]
    api.deliver()
    listed = api.call("GET", f"/devices/{DEVICE}/commands", "quality").json()
    assert [(c["command_id"], c["state"]) for c in listed] == [(command["command_id"], "pending")]
    one = api.call("GET", f"/devices/{DEVICE}/commands/{command['command_id']}", "fleet-ops")
    assert one.json()["args"] == {"interlock": "locked"}


def test_clinic_staff_may_lock_their_own_devices_only(api: Api) -> None:
    """lock to a device the clinic holds: 202; unlock: 403; another clinic's device:
    404, as if it did not exist."""
    locked = api.call("POST", f"/devices/{DEVICE}/commands", "front-desk", {"cmd": "lock"})
    assert locked.status_code == 202, locked.text
    unlock = api.call("POST", f"/devices/{DEVICE}/commands", "front-desk", {"cmd": "unlock"})
    assert unlock.status_code == 403
    elsewhere = api.call("POST", f"/devices/{OTHER}/commands", "front-desk", {"cmd": "lock"})
    assert elsewhere.status_code == 404
    assert api.stream(f"commands:{DEVICE}") == ["command.issued"]
    assert api.stream(f"commands:{OTHER}") == []


def test_clinic_layer_keeps_within_the_bounds_and_the_rest_is_the_manufacturers(api: Api) -> None:
    """A clinic sets its own layer within the bounds (recorded once, with its author);
    out of bounds is a 422 naming the field and bound; the fleet layer and another
    clinic's are not its to touch."""
    too_fast = api.call("PUT", "/clinics/clinic-7/config", "front-desk",
                        {"heartbeat_interval_s": 2})  # fmt: skip
    assert too_fast.status_code == 422
    assert too_fast.json()["detail"] == "heartbeat_interval_s 2 is outside 10..3600"
    wanted = {"cartridge_life_mode": "block", "recalled_lots": ["LOT-C7"]}
    first = api.call("PUT", "/clinics/clinic-7/config", "front-desk", wanted)
    again = api.call("PUT", "/clinics/clinic-7/config", "front-desk", wanted)
    assert first.status_code == 200
    assert first.json()["recorded"] is not None
    assert again.json()["recorded"] is None
    assert "front-desk" in again.json()["changed_by"]
    assert api.call("PUT", "/config/layers/fleet", "front-desk", {}).status_code == 403
    assert api.call("PUT", "/clinics/clinic-9/config", "front-desk", {}).status_code == 404
    narrowed = api.call("PUT", "/config/clinic-bounds", "fleet-ops",
                        {"modes": {"cartridge_life_mode": ["block"]}})  # fmt: skip
    assert narrowed.status_code == 200
    warn = api.call("PUT", "/clinics/clinic-7/config", "front-desk",
                    {"cartridge_life_mode": "warn"})  # fmt: skip
    assert warn.status_code == 422
    assert "the bounds allow block" in warn.json()["detail"]


def test_device_configuration_and_convergence_after_the_loop_folds(api: Api) -> None:
    """Registered devices have version 1 of the defaults, pending; a fleet layer makes
    version 2 with its settings; the clinic sees its own device and counts only."""
    layer = api.call("PUT", "/config/layers/fleet", "fleet-ops",
                     {"heartbeat_interval_s": 120, "recalled_lots": ["LOT-1"]})  # fmt: skip
    assert layer.status_code == 200, layer.text
    api.deliver()
    config = api.call("GET", f"/devices/{DEVICE}/config", "fleet-ops").json()
    assert config["state"] == "pending"
    assert config["desired"]["version"] == 2  # 1: the defaults, at registration
    assert config["desired"]["settings"]["recalled_lots"] == ["LOT-1"]
    fleet = api.call("GET", "/fleet/config-convergence", "fleet-ops").json()
    assert (fleet["devices"], fleet["applied"], fleet["pending"]) == (2, 0, 2)
    clinic = api.call("GET", "/fleet/config-convergence", "front-desk").json()
    assert clinic["devices"] == 1
    listed = api.call("GET", "/fleet/config-devices?state=pending", "front-desk").json()
    assert [item["device_id"] for item in listed["items"]] == [DEVICE]
    assert api.call("GET", f"/devices/{OTHER}/config", "front-desk").status_code == 404
    recorded = api.stream("config:fleet")
    assert recorded == ["device_config.changed"]
    store = open_event_store(api.url)
    try:
        (event,) = store.read_stream("config:fleet")
        assert orjson.loads(event.body)["data"]["previous"] == {}
    finally:
        store.close()
