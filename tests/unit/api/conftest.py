from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cloudlet.api import create_app
from cloudlet.config import Spec
from cloudlet.config.spec import ServerSpec
from cloudlet.config.storage import StorageSpec
from tests.fakes import FakeChatEngine, FakeEmbeddingEngine


@pytest.fixture
def chat_engine() -> FakeChatEngine:
    return FakeChatEngine("fake")


@pytest.fixture
def client(chat_engine: FakeChatEngine, tmp_path: Path) -> Iterator[TestClient]:
    spec = Spec(
        server=ServerSpec(max_body_bytes=4096),
        models=[],
        storage=StorageSpec(ledger=f"sqlite:///{tmp_path}/ledger.db"),
    )
    app = create_app(spec, {"fake": chat_engine, "fake-embed": FakeEmbeddingEngine()})
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def chat_body(**extra: object) -> dict[str, object]:
    return {"model": "fake", "messages": [{"role": "user", "content": "hi"}], **extra}
