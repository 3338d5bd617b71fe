from fastapi.testclient import TestClient

from cloudlet.api import create_app
from cloudlet.config import load_spec
from cloudlet.config.spec import Spec
from cloudlet.config.storage import StorageSpec
from tests.fakes import FakeChatEngine
from tests.unit.api.conftest import chat_body


def test_ledger_off_means_no_keys_no_admin_api() -> None:
    spec = Spec(models=[], storage=StorageSpec(ledger="off"))
    with TestClient(create_app(spec, {"fake": FakeChatEngine("fake")})) as client:
        headers = {"Authorization": "Bearer anything"}
        assert (
            client.post("/v1/chat/completions", json=chat_body(), headers=headers).status_code
            == 200
        )
        assert client.get("/admin/keys", headers=headers).status_code == 404


def test_off_is_accepted_in_the_spec_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cloudlet.yaml"
    for text in ("storage: {ledger: 'off'}\n", "storage: {ledger: off}\n"):
        path.write_text(text)
        assert load_spec(path, environ={}).storage.ledger == "off"
