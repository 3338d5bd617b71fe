"""Money inputs are validated at the door: a bad amount, limit, name or currency is a 400 that
names the field (admin API) or a spec error naming it, never a 500 from deeper down."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cloudlet.api import create_app
from cloudlet.config import Spec, load_spec
from cloudlet.config.storage import StorageSpec
from cloudlet.errors import SpecError
from cloudlet.ledger.store import Ledger
from cloudlet.pricing import Money
from tests.fakes import FakeChatEngine
from tests.unit.api.conftest import chat_body
from tests.unit.ledger.stores import BACKENDS, drop_ledger, new_ledger_url

ADMIN = "admin-key-for-money-tests"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(params=BACKENDS)
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = new_ledger_url(request.param, tmp_path)
    yield url
    asyncio.run(drop_ledger(url))


@pytest.fixture
def client(ledger_url: str) -> Iterator[TestClient]:
    spec = Spec(models=[], storage=StorageSpec(ledger=ledger_url))
    app = create_app(spec, {"fake": FakeChatEngine("fake")}, admin_key=ADMIN)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def refused(client: TestClient, body: dict[str, object]) -> str:
    """POST /admin/keys; assert a 400 in the OpenAI envelope and return the param it names."""
    r = client.post("/admin/keys", json=body, headers=AUTH)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    return str(error["param"])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"team": "t", "tpm": 2**31}, "tpm"),
        ({"team": "t", "rpm": 2**31}, "rpm"),
        ({"team": "t", "tpm": 10**30}, "tpm"),
        ({"team": "t", "budget": "NaN"}, "budget"),
        ({"team": "t", "budget": "Infinity"}, "budget"),
        ({"team": "t", "budget": "-5"}, "budget"),
        ({"team": "t", "budget": "1e30"}, "budget"),
        ({"team": "t", "budget": "twenty"}, "budget"),
        ({"team": "t", "budget": "0.0000000001"}, "budget"),
        ({"team": "t", "budget": "5", "currency": "EUR"}, "currency"),
        ({"team": "a\x00b"}, "team"),
        ({"team": "a\nb"}, "team"),
        ({"team": "a\u008ab"}, "team"),  # a C1 control (found by the live fuzzer)
        ({"team": "a\u200eb"}, "team"),  # a format character
        ({"team": "t", "models": ["fake\x00"]}, "models[0]"),
    ],
)
def test_bad_money_and_limits_are_400_naming_the_field(
    client: TestClient, body: dict[str, object], param: str
) -> None:
    assert refused(client, body) == param
    assert client.get("/admin/keys", headers=AUTH).json()["data"] == []  # nothing stored


def test_good_values_at_the_bounds_are_stored(client: TestClient) -> None:
    body = {"team": "t", "rpm": 2**31 - 1, "tpm": 2**31 - 1, "budget": "1000000"}
    r = client.post("/admin/keys", json={**body, "currency": "USD"}, headers=AUTH)
    assert r.status_code == 201, r.text
    assert (r.json()["budget"], r.json()["currency"]) == ("1000000", "USD")


def test_huge_max_tokens_is_400_before_any_money_arithmetic(client: TestClient) -> None:
    r = client.post("/admin/keys", json={"team": "t", "budget": "5"}, headers=AUTH)
    key = r.json()["key"]
    for max_tokens in (10**22, 65):  # the fake model's context is 64
        r = client.post(
            "/v1/chat/completions",
            json=chat_body(max_tokens=max_tokens),
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "max_tokens"
        assert r.json()["error"]["code"] == "context_length_exceeded"
    rows = []
    for _ in range(50):  # the ledger writes in batches
        csv_text = client.get("/admin/usage", params={"format": "csv"}, headers=AUTH).text
        rows = list(csv.DictReader(io.StringIO(csv_text)))
        if len(rows) >= 2:
            break
        time.sleep(0.1)
    assert [(r["status"], r["error"], r["cost"]) for r in rows] == [
        ("refused", "context_length_exceeded", "0")
    ] * 2  # each refusal has its ledger row, at no cost
    ok = client.post(
        "/v1/chat/completions",
        json=chat_body(max_tokens=16),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert ok.status_code == 200, ok.text


def test_a_key_with_a_budget_in_another_currency_is_refused_not_a_500(
    client: TestClient, ledger_url: str
) -> None:
    async def create() -> str:  # as a deployment that billed in EUR once did
        ledger = await Ledger.open(StorageSpec(ledger=ledger_url), start_writer=False)
        try:
            created = await ledger.keys.create(
                "old", budget=Money(Decimal(5), "EUR"), now=datetime.now(UTC)
            )
            return created.key
        finally:
            await ledger.close()

    key = asyncio.run(create())
    r = client.post(
        "/v1/chat/completions", json=chat_body(), headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "budget_currency_mismatch"
    assert "EUR" in r.json()["error"]["message"] and "USD" in r.json()["error"]["message"]


CLOUD = """
  - name: cloud
    engine: openai
    url: http://127.0.0.1:9/v1
    cloud: true
    price: {input_per_mtok: 1, output_per_mtok: 2, currency: CUR}
"""


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (f"models:{CLOUD}".replace("CUR", "EUR"), "models[0].price.currency: EUR"),
        ("currency: EUR\nmodels:" + CLOUD.replace("CUR", "USD"), "models[0].price.currency"),
        (
            "currency: EUR\nmodels:\n  - name: m\n    source: package://p/m.gguf\n",
            "models[0].cost",
        ),
        (
            "currency: EUR\nmodels:\n  - name: m\n    source: package://p/m.gguf\n"
            "    cost: {hardware_per_hour: 1, currency: EUR}\n",
            "models[0].cost.cloud_equivalent",
        ),
        (
            "models:"
            + CLOUD.replace("CUR", "USD")
            + "  - name: m\n    source: package://p/m.gguf\n"
            "routes:\n  - name: r\n    targets: [m, cloud]\n"
            "    cloud_budget: {per_day: 5, currency: GBP}\n",
            "routes[0].cloud_budget.currency: GBP",
        ),
        ("currency: usd\n", "currency"),
    ],
)
def test_a_spec_in_two_currencies_is_a_spec_error_naming_the_field(
    tmp_path: Path, text: str, field: str
) -> None:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as exc:
        load_spec(path, environ={})
    assert field in str(exc.value), str(exc.value)


def test_one_currency_throughout_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(
        "currency: EUR\nmodels:"
        + CLOUD.replace("CUR", "EUR")
        + "  - name: m\n    source: package://p/m.gguf\n"
        "    cost:\n      hardware_per_hour: 1\n      currency: EUR\n"
        "      cloud_equivalent: {input_per_mtok: 1, output_per_mtok: 1, currency: EUR}\n"
        "routes:\n  - name: r\n    targets: [m, cloud]\n"
        "    cloud_budget: {per_day: 5, currency: EUR}\n"
    )
    assert load_spec(path, environ={}).currency == "EUR"
