"""Generation bodies read by the routes themselves (api/bodies.py): the same 400s and the same
OpenAPI document as FastAPI's body parameters gave."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloudlet.api.bodies import is_json
from tests.unit.api.conftest import chat_body

PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]


def _error(r: Any) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize("path", PATHS)
def test_an_empty_body_is_400(client: TestClient, path: str) -> None:
    r = client.post(path, content=b"", headers={"content-type": "application/json"})
    assert _error(r)["message"] == "Invalid request body: Field required"


@pytest.mark.parametrize("content_type", ["text/plain", None])
def test_a_body_that_is_not_declared_json_is_400(
    client: TestClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/v1/chat/completions", content=b'{"model": "fake"}', headers=headers)
    message = _error(r)["message"]
    assert message.startswith("We could not parse the JSON body of your request: ")
    said = "the Content-Type is 'text/plain'" if content_type else "no Content-Type"
    assert said in message
    assert message.endswith("Send a JSON object with Content-Type: application/json.")


def test_json_content_types_with_parameters_and_suffixes_are_read(client: TestClient) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        body = b'{"model": "fake", "messages": [{"role": "user", "content": "hi"}]}'
        r = client.post(
            "/v1/chat/completions", content=body, headers={"content-type": content_type}
        )
        assert r.status_code == 200, (content_type, r.text)


def test_is_json() -> None:
    assert is_json("Application/JSON ; charset=utf-8")
    assert is_json("application/merge-patch+json")
    assert not is_json("text/json")
    assert not is_json("application/jsonp")
    assert not is_json(None)


def test_errors_name_the_field_as_before(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json=chat_body(temperature="hot", top_p=7))
    error = _error(r)
    assert error["param"] == "temperature"
    assert error["message"].endswith("(and 1 more problem)")
    r = client.post("/v1/embeddings", json={"model": "fake-embed"})
    assert _error(r)["param"] == "input"


def test_messages_errors_keep_anthropics_shape(client: TestClient) -> None:
    r = client.post("/v1/messages", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_openapi_documents_the_bodies_and_every_reference_resolves(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    expected = {  # path: (model, one of its required fields)
        "/v1/chat/completions": ("ChatCompletionRequest", "messages"),
        "/v1/completions": ("CompletionRequest", "prompt"),
        "/v1/embeddings": ("EmbeddingRequest", "input"),
        "/v1/messages": ("MessagesRequest", "messages"),
        "/v1/responses": ("ResponsesRequest", "input"),
    }
    for path, (model, field) in expected.items():
        body = schema["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model}"
        assert field in components[model]["required"], (model, components[model])
    for ref in set(_refs(schema)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rpartition("/")[2] in components, ref
