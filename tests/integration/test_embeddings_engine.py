"""The llama.cpp embedding engine with the real all-MiniLM-L6-v2, against sentence-transformers.

The reference vectors in ``shared/reference/embeddings`` were computed by sentence-transformers
itself from the same weights; the engine is right when every vector has cosine >= 0.99 with them.
The model is converted (into a temporary cache) and loaded once for the module.
"""

from __future__ import annotations

import asyncio
import json
import os
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import pytest_asyncio
from tokenizers import Tokenizer

from cloudlet.config.spec import MINILM_SOURCE, ModelSpec
from cloudlet.engines.base import EmbeddingEngine
from cloudlet.engines.llamacpp_embed import LlamaCppEmbeddingEngine
from cloudlet.engines.minilm_gguf import PHANTOM_SPACE, convert
from cloudlet.engines.sources import resolve_source
from cloudlet.errors import ContextLengthExceeded, EngineOverloaded, EngineUnavailable
from tests.safe_mode import for_this_machine

pytestmark = pytest.mark.slow
# The async tests share the module's event loop, where the module-scoped engine lives.
in_module_loop = pytest.mark.asyncio(loop_scope="module")


def _shared_dir() -> Path:
    override = os.environ.get("CLOUDLET_SHARED_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / ".." / "shared"


def _spec(**overrides: Any) -> ModelSpec:
    fields: dict[str, Any] = {
        "name": "all-minilm-l6-v2",
        "kind": "embedding",
        "source": MINILM_SOURCE,
        "context": 512,
    }
    return for_this_machine(ModelSpec(**(fields | overrides)))


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    path = _shared_dir() / "reference" / "embeddings" / "all-MiniLM-L6-v2.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    """The model's own Hugging Face tokenizer, untruncated and unpadded."""
    with zipfile.ZipFile(resolve_source(MINILM_SOURCE)) as archive:
        tok = Tokenizer.from_str(archive.read("tokenizer.json").decode("utf-8"))
    tok.no_truncation()
    tok.no_padding()
    return tok


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gguf-cache")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(cache_dir: Path) -> AsyncIterator[LlamaCppEmbeddingEngine]:
    engine = LlamaCppEmbeddingEngine(_spec(), cache_dir=cache_dir)
    await engine.start()
    yield engine
    await engine.close()


def _cosine(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a), np.asarray(b)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


@in_module_loop
async def test_every_reference_sentence_matches_sentence_transformers(
    engine: LlamaCppEmbeddingEngine, reference: dict[str, Any]
) -> None:
    items = reference["items"]
    result = await engine.embed([item["text"] for item in items])
    assert len(result.vectors) == len(items)
    for item, vector in zip(items, result.vectors, strict=True):
        assert len(vector) == reference["dim"]
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
        assert _cosine(vector, item["embedding"]) >= 0.99, item["text"]


@in_module_loop
async def test_one_text_at_a_time_gives_the_same_vectors(
    engine: LlamaCppEmbeddingEngine, reference: dict[str, Any]
) -> None:
    texts = [item["text"] for item in reference["items"][:3]]
    together = (await engine.embed(texts)).vectors
    for text, vector in zip(texts, together, strict=True):
        (alone,) = (await engine.embed([text])).vectors
        assert _cosine(alone, vector) >= 0.9999


@in_module_loop
async def test_a_paraphrase_is_closer_than_an_unrelated_sentence(
    engine: LlamaCppEmbeddingEngine,
) -> None:
    cat, rug, revenue = (
        await engine.embed(
            [
                "The cat sits on the mat.",
                "A cat is sitting on a rug.",
                "Quarterly revenue grew by eight percent.",
            ]
        )
    ).vectors
    assert _cosine(cat, rug) > _cosine(cat, revenue) + 0.2


@in_module_loop
async def test_usage_counts_every_token_including_cls_and_sep(
    engine: LlamaCppEmbeddingEngine, reference: dict[str, Any], tokenizer: Tokenizer
) -> None:
    texts = [item["text"] for item in reference["items"]]
    expected = sum(len(tokenizer.encode(text).ids) for text in texts)
    assert (await engine.embed(texts)).prompt_tokens == expected
    assert (await engine.embed([""])).prompt_tokens == 2  # [CLS] [SEP]


@in_module_loop
async def test_an_over_long_input_is_a_context_length_error(
    engine: LlamaCppEmbeddingEngine,
) -> None:
    with pytest.raises(ContextLengthExceeded) as caught:
        await engine.embed(["short", "word " * 600])
    assert caught.value.param == "input"
    assert caught.value.status == 400
    assert "input[1]" in caught.value.message
    # the longest input that fits still works: [CLS] + 510 words + [SEP]
    assert (await engine.embed(["word " * 510])).prompt_tokens == 512


@in_module_loop
async def test_info_and_stats(engine: LlamaCppEmbeddingEngine) -> None:
    assert isinstance(engine, EmbeddingEngine)
    info = engine.info
    assert (info.id, info.kind, info.engine, info.context_length) == (
        "all-minilm-l6-v2",
        "embedding",
        "llamacpp",
        512,
    )
    before = engine.stats().requests_total
    result = await engine.embed(["a"])
    stats = engine.stats()
    assert stats.requests_total == before + 1
    assert stats.prompt_tokens_evaluated >= result.prompt_tokens
    assert (stats.queue_depth, stats.running, stats.capacity) == (0, 0, 1)


def test_the_converted_file_carries_the_bert_vocab(cache_dir: Path) -> None:
    reader = gguf.GGUFReader(convert(resolve_source(MINILM_SOURCE), cache_dir=cache_dir))

    def field(key: str) -> Any:
        found = reader.get_field(key)
        assert found is not None, key
        return found.contents()

    assert field("general.architecture") == "bert"
    assert field("bert.pooling_type") == gguf.PoolingType.MEAN
    tokens = field("tokenizer.ggml.tokens")
    assert len(tokens) == 30522
    assert tokens[101:104] == ["[CLS]", "[SEP]", "[MASK]"]
    assert tokens[2003] == PHANTOM_SPACE + "is"
    assert "s" in tokens  # "##s" loses its prefix


@in_module_loop
async def test_a_full_queue_refuses_with_retry_after(cache_dir: Path) -> None:
    engine = LlamaCppEmbeddingEngine(_spec(queue_size=0), cache_dir=cache_dir)
    await engine.start()
    try:
        first = asyncio.ensure_future(engine.embed(["one"]))
        await asyncio.sleep(0)  # let it be admitted
        with pytest.raises(EngineOverloaded) as caught:
            await engine.embed(["two"])
        assert caught.value.retry_after == 1
        assert caught.value.status == 503
        assert len((await first).vectors) == 1
        assert len((await engine.embed(["three"])).vectors) == 1  # admitted again once idle
    finally:
        await engine.close()
    await engine.close()  # idempotent
    with pytest.raises(EngineUnavailable):
        await engine.embed(["after close"])
