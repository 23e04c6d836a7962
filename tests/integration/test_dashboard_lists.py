"""The dashboard's lists refuse what they did not make: a forged page link, a date
that is not one, a time zone that is not one, a way back to another site; and a
chosen zone is kept for the browser."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.eventstore import upgrade_schema
from services.projections.read_store import ReadModelStore
from tests.support.accounts import Account, create_accounts, csrf_token, sign_in
from tests.support.api_client import MASTER_KEY, api_client
from tests.support.list_fleet import load_list_fleet


@pytest.fixture(scope="module")
def signed_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('lists') / Path('coreline.db')}"
    upgrade_schema(url)
    read_models = ReadModelStore(url)
    try:
        load_list_fleet(read_models.engine, devices=150, sessions=300, alerts=20)
    finally:
        read_models.close()
    accounts: dict[str, Account] = create_accounts(url, MASTER_KEY)
    with api_client(url) as client:
        response = sign_in(client, accounts["auditor"])
        assert response.status_code == 303, response.text
        yield client


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/devices?cursor=not-a-cursor", "not one the dashboard made"),
        ("/sessions?cursor=WyJ4Il0", "not one the dashboard made"),
        ("/sessions?from=2026-13-40", "is not a date"),
    ],
)
def test_bad_list_links_are_a_400_page(signed_in: TestClient, path: str, says: str) -> None:
    response = signed_in.get(path)

    assert response.status_code == 400
    assert says in response.text


def test_a_second_page_link_carries_the_way_back(signed_in: TestClient) -> None:
    first = signed_in.get("/devices")
    assert first.status_code == 200
    assert "page 1" in first.text
    assert 'data-testid="previous-page"' not in first.text

    following = first.text.split('data-testid="next-page"')[0].rsplit('href="', 1)[1]
    second = signed_in.get(following.split('"')[0].replace("&amp;", "&"))

    assert second.status_code == 200
    assert "page 2" in second.text
    assert 'rel="prev"' in second.text


def test_the_chosen_zone_is_kept_and_a_bad_one_refused(signed_in: TestClient) -> None:
    token = csrf_token(signed_in.get("/time-zone").text)

    refused = signed_in.post(
        "/time-zone",
        data={"zone": "Mars/Olympus_Mons", "back": "/sessions", "csrf_token": token},
        follow_redirects=False,
    )
    elsewhere = signed_in.post(
        "/time-zone",
        data={"zone": "Asia/Tokyo", "back": "//evil.example/x", "csrf_token": token},
        follow_redirects=False,
    )

    assert refused.status_code == 400
    assert "not an IANA time zone" in refused.text
    assert elsewhere.status_code == 303
    assert elsewhere.headers["location"] == "/"
    page = signed_in.get("/sessions")
    assert "Times in <strong" in page.text
    assert 'data-zone="Asia/Tokyo"' in page.text
    assert " JST</time>" in page.text
