from fastapi.testclient import TestClient

from tests.unit.api.conftest import chat_body


def test_metrics_expose_engine_stats(client: TestClient) -> None:
    client.post("/v1/chat/completions", json=chat_body())
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'cloudlet_queue_depth{model="fake"} 0.0' in text
    assert 'cloudlet_in_flight_requests{model="fake"} 0.0' in text
    assert 'cloudlet_engine_requests_total{model="fake"} 1.0' in text
    assert 'cloudlet_model_ready{model="fake-embed"} 1.0' in text
    assert "cloudlet_draining 0.0" in text


def test_draining_refuses_new_requests_but_keeps_probes(client: TestClient) -> None:
    client.app.state.drain.begin()  # type: ignore[attr-defined]
    r = client.post("/v1/chat/completions", json=chat_body())
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "engine_unavailable"
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert (ready.status_code, ready.json()["status"]) == (503, "draining")
    assert "cloudlet_draining 1.0" in client.get("/metrics").text
