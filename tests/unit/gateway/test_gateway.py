import pytest

from cloudlet.domain import ChatMessage, GenerationRequest, ModelId, TextDelta
from cloudlet.engines.base import ChatEngine, EmbeddingEngine
from cloudlet.errors import EngineUnavailable, ModelNotFound, WrongModelKind
from cloudlet.gateway import Gateway
from tests.fakes import FakeChatEngine, FakeEmbeddingEngine


def request(model: str = "chat") -> GenerationRequest:
    return GenerationRequest(model=ModelId(model), messages=(ChatMessage("user", "hi"),))


def test_fakes_satisfy_the_engine_protocols() -> None:
    assert isinstance(FakeChatEngine(), ChatEngine)
    assert isinstance(FakeEmbeddingEngine(), EmbeddingEngine)
    assert not isinstance(FakeEmbeddingEngine(), ChatEngine)


async def test_lifecycle_and_status() -> None:
    chat = FakeChatEngine("chat")
    gateway = Gateway({"chat": chat})
    assert gateway.status() == {"chat": "loading"}
    assert not gateway.ready
    with pytest.raises(EngineUnavailable, match="still loading"):
        await gateway.generate(request())
    await gateway.start()
    assert gateway.ready and chat.started
    await gateway.close()
    assert chat.closed


async def test_a_model_that_fails_to_load_is_reported() -> None:
    chat = FakeChatEngine("chat")
    chat.load_error = RuntimeError("no such file")
    gateway = Gateway({"chat": chat})
    await gateway.start()
    assert gateway.status() == {"chat": "failed: no such file"}
    with pytest.raises(EngineUnavailable, match="failed to load: no such file") as exc:
        await gateway.generate(request())
    assert exc.value.retry_after == 60


async def test_generate_routes_to_the_named_engine() -> None:
    gateway = Gateway(
        {"chat": FakeChatEngine("chat", ["a", "b"]), "emb": FakeEmbeddingEngine("emb")}
    )
    await gateway.start()
    generation = await gateway.generate(request())
    assert (generation.target, generation.spilled) == ("chat", False)
    events = [e async for e in generation.events]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["a", "b"]
    with pytest.raises(ModelNotFound):
        await gateway.generate(request("other"))
    with pytest.raises(WrongModelKind):
        await gateway.generate(request("emb"))
    with pytest.raises(WrongModelKind):
        await gateway.embed(ModelId("chat"), ["x"])
    embedding = await gateway.embed(ModelId("emb"), ["xy"])
    assert embedding.result.vectors[0][0] == 2.0
    assert (embedding.target, embedding.spilled) == ("emb", False)


async def test_closing_a_stream_early_cancels_it() -> None:
    chat = FakeChatEngine("chat", ["a", "b", "c"])
    gateway = Gateway({"chat": chat})
    await gateway.start()
    stream = (await gateway.generate(request())).events
    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()
    assert chat.cancelled == 1


async def test_a_stream_dropped_before_it_is_read_is_still_released() -> None:
    chat = FakeChatEngine("chat", ["a", "b", "c"])
    gateway = Gateway({"chat": chat})
    await gateway.start()
    generation = await gateway.generate(request())
    await generation.events.aclose()  # never iterated: a client gone before the first byte
    assert chat.cancelled == 1
