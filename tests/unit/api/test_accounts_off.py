"""``storage: {ledger: off}``: no keys and no ledger, but auth still fails closed."""

import pytest
from fastapi.testclient import TestClient

from cloudlet.api import create_app
from cloudlet.config import load_spec
from cloudlet.config.spec import ServerSpec, Spec
from cloudlet.config.storage import StorageSpec
from cloudlet.errors import UnprotectedServer
from tests.fakes import FakeChatEngine
from tests.unit.api.conftest import chat_body

ADMIN = "admin-secret-for-tests"


def ledger_off(host: str = "127.0.0.1") -> Spec:
    return Spec(models=[], server=ServerSpec(host=host), storage=StorageSpec(ledger="off"))


def test_ledger_off_on_loopback_without_admin_key_is_open() -> None:
    with TestClient(create_app(ledger_off(), {"fake": FakeChatEngine("fake")})) as client:
        headers = {"Authorization": "Bearer anything"}
        assert client.get("/health").json()["auth"] == "open"
        assert (
            client.post("/v1/chat/completions", json=chat_body(), headers=headers).status_code
            == 200
        )
        # Open mode is no admin: the admin API still needs the admin key.
        assert client.get("/admin/keys", headers=headers).status_code == 403


def test_ledger_off_with_admin_key_needs_it_everywhere() -> None:
    app = create_app(ledger_off(), {"fake": FakeChatEngine("fake")}, admin_key=ADMIN)
    with TestClient(app) as client:
        assert client.get("/health").json()["auth"] == "api-key"
        for headers in ({}, {"Authorization": "Bearer anything"}):
            refused = client.post("/v1/chat/completions", json=chat_body(), headers=headers)
            assert refused.status_code == 401
            assert client.get("/v1/models", headers=headers).status_code == 401
            assert client.get("/admin/keys", headers=headers).status_code == 401
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert (
            client.post("/v1/chat/completions", json=chat_body(), headers=admin).status_code == 200
        )
        assert client.get("/v1/models", headers=admin).status_code == 200
        # The admin API authenticates the admin key and says why it has nothing to manage.
        keys = client.get("/admin/keys", headers=admin)
        assert keys.status_code == 400
        assert keys.json()["error"]["code"] == "ledger_off"
        metrics = client.get("/metrics").text
        assert 'cloudlet_auth_failures_total{reason="missing_key"} 3.0' in metrics
        assert 'cloudlet_auth_failures_total{reason="invalid_key"} 3.0' in metrics


@pytest.mark.parametrize("admin_key", [None, ADMIN])
def test_ledger_off_off_loopback_needs_the_admin_key(admin_key: str | None) -> None:
    app = create_app(ledger_off("0.0.0.0"), {"fake": FakeChatEngine("fake")}, admin_key=admin_key)
    if admin_key is None:
        with pytest.raises(UnprotectedServer), TestClient(app):
            pass
        return
    with TestClient(app) as client:
        assert client.post("/v1/chat/completions", json=chat_body()).status_code == 401
        assert (
            client.post(
                "/v1/chat/completions", json=chat_body(), headers={"x-api-key": ADMIN}
            ).status_code
            == 200
        )


def test_off_is_accepted_in_the_spec_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cloudlet.yaml"
    for text in ("storage: {ledger: 'off'}\n", "storage: {ledger: off}\n"):
        path.write_text(text)
        assert load_spec(path, environ={}).storage.ledger == "off"
