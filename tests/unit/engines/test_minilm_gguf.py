"""The sentence-transformers → GGUF converter, on a tiny synthetic BERT checkpoint.

A synthetic checkpoint keeps these tests fast and independent of the bundled model; the real
model's conversion is exercised (and checked against sentence-transformers) in
``tests/integration/test_embeddings_engine.py``.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from cloudlet.engines.minilm_gguf import (
    CONVERTER_VERSION,
    PHANTOM_SPACE,
    convert,
    default_cache_dir,
    read_safetensors,
)
from cloudlet.errors import EngineUnavailable

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "##lo", "world", "[unused0]"]
HIDDEN, FFN, LAYERS, HEADS, POSITIONS = 8, 16, 2, 2, 32
# sentence-transformers' 1_Pooling/config.json keys
POOLING_KEYS = {
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
}


def _safetensors(tensors: dict[str, np.ndarray[Any, Any]]) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name, array in tensors.items():
        data = array.tobytes()
        dtype = {"float32": "F32", "int64": "I64"}[str(array.dtype)]
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def _weights() -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)

    def t(*shape: int) -> np.ndarray[Any, Any]:
        return rng.standard_normal(shape).astype(np.float32)

    w = {
        "embeddings.position_ids": np.arange(POSITIONS, dtype=np.int64).reshape(1, -1),
        "embeddings.word_embeddings.weight": t(len(VOCAB), HIDDEN),
        "embeddings.position_embeddings.weight": t(POSITIONS, HIDDEN),
        "embeddings.token_type_embeddings.weight": t(2, HIDDEN),
        "embeddings.LayerNorm.weight": t(HIDDEN),
        "embeddings.LayerNorm.bias": t(HIDDEN),
        "pooler.dense.weight": t(HIDDEN, HIDDEN),
        "pooler.dense.bias": t(HIDDEN),
    }
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for part in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ):
            w[p + part + ".weight"], w[p + part + ".bias"] = t(HIDDEN, HIDDEN), t(HIDDEN)
        w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"] = (
            t(FFN, HIDDEN),
            t(FFN),
        )
        w[p + "output.dense.weight"], w[p + "output.dense.bias"] = t(HIDDEN, FFN), t(HIDDEN)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + norm + ".weight"], w[p + norm + ".bias"] = t(HIDDEN), t(HIDDEN)
    return w


def _checkpoint(root: Path, *, lowercase: bool = True, pooling: str = "mean") -> Path:
    root.mkdir(parents=True)
    config = {
        "model_type": "bert",
        "architectures": ["BertModel"],
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "max_position_embeddings": POSITIONS,
        "vocab_size": len(VOCAB),
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "position_embedding_type": "absolute",
        "hidden_act": "gelu",
    }
    tokenizer = {
        "added_tokens": [
            {"id": i, "content": tok, "special": True} for i, tok in enumerate(VOCAB[:5])
        ],
        "normalizer": {"type": "BertNormalizer", "lowercase": lowercase},
        "model": {
            "type": "WordPiece",
            "unk_token": "[UNK]",
            "vocab": {tok: i for i, tok in enumerate(VOCAB)},
        },
    }
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (root / "config.json").write_text(json.dumps(config))
    (root / "tokenizer.json").write_text(json.dumps(tokenizer))
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": HIDDEN,
                "pooling_mode_mean_tokens": False,
                POOLING_KEYS[pooling]: True,
            }
        )
    )
    (root / "model.safetensors").write_bytes(_safetensors(_weights()))
    return root


def _zip(folder: Path) -> Path:
    target = folder.with_suffix(".zip")
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder))
    return target


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    assert field is not None, key
    return field.contents()


@pytest.fixture
def converted(tmp_path: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(convert(_checkpoint(tmp_path / "model"), cache_dir=tmp_path / "cache"))


def test_hyperparameters_are_bert(converted: gguf.GGUFReader) -> None:
    assert _field(converted, "general.architecture") == "bert"
    assert _field(converted, "bert.context_length") == POSITIONS
    assert _field(converted, "bert.embedding_length") == HIDDEN
    assert _field(converted, "bert.feed_forward_length") == FFN
    assert _field(converted, "bert.block_count") == LAYERS
    assert _field(converted, "bert.attention.head_count") == HEADS
    assert _field(converted, "bert.attention.layer_norm_epsilon") == pytest.approx(1e-12)
    assert _field(converted, "bert.attention.causal") is False
    assert _field(converted, "bert.pooling_type") == gguf.PoolingType.MEAN


def test_vocab_is_in_phantom_space_form(converted: gguf.GGUFReader) -> None:
    assert _field(converted, "tokenizer.ggml.model") == "bert"
    assert _field(converted, "tokenizer.ggml.tokens") == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        PHANTOM_SPACE + "hello",
        "lo",
        PHANTOM_SPACE + "world",
        PHANTOM_SPACE + "[unused0]",
    ]
    control, normal = gguf.TokenType.CONTROL, gguf.TokenType.NORMAL
    assert _field(converted, "tokenizer.ggml.token_type") == [control] * 5 + [normal] * 4
    assert _field(converted, "tokenizer.ggml.bos_token_id") == 2
    assert _field(converted, "tokenizer.ggml.seperator_token_id") == 3
    assert _field(converted, "tokenizer.ggml.unknown_token_id") == 1
    assert _field(converted, "tokenizer.ggml.padding_token_id") == 0
    assert _field(converted, "tokenizer.ggml.mask_token_id") == 4
    assert _field(converted, "tokenizer.ggml.add_bos_token") is True
    assert _field(converted, "tokenizer.ggml.add_sep_token") is True


def test_tensors_get_llama_cpp_names_and_types(converted: gguf.GGUFReader) -> None:
    tensors = {t.name: t for t in converted.tensors}
    expected = {
        "token_embd.weight",
        "position_embd.weight",
        "token_types.weight",
        "token_embd_norm.weight",
        "token_embd_norm.bias",
    }
    for i in range(LAYERS):
        expected |= {
            f"blk.{i}.{n}.{k}"
            for k in ("weight", "bias")
            for n in (
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "attn_output_norm",
                "ffn_up",
                "ffn_down",
                "layer_output_norm",
            )
        }
    assert set(tensors) == expected  # position_ids and the pooler are dropped
    assert tensors["blk.0.ffn_up.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["blk.0.ffn_up.bias"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["token_types.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    original = _weights()["encoder.layer.1.attention.self.key.bias"]
    np.testing.assert_array_equal(np.asarray(tensors["blk.1.attn_k.bias"].data), original)


def test_f32_keeps_every_tensor_exact(tmp_path: Path) -> None:
    path = convert(_checkpoint(tmp_path / "model"), cache_dir=tmp_path / "c", tensor_type="f32")
    reader = gguf.GGUFReader(path)
    word = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert word.tensor_type == gguf.GGMLQuantizationType.F32
    np.testing.assert_array_equal(
        np.asarray(word.data), _weights()["embeddings.word_embeddings.weight"]
    )


def test_zip_and_folder_give_the_same_model(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path / "model")
    from_zip = gguf.GGUFReader(convert(_zip(folder), cache_dir=tmp_path / "cache"))
    from_dir = gguf.GGUFReader(convert(folder, cache_dir=tmp_path / "cache"))
    assert [t.name for t in from_zip.tensors] == [t.name for t in from_dir.tensors]
    assert _field(from_zip, "tokenizer.ggml.tokens") == _field(from_dir, "tokenizer.ggml.tokens")


def test_conversion_is_cached_by_content(tmp_path: Path) -> None:
    source = _zip(_checkpoint(tmp_path / "model"))
    cache = tmp_path / "cache"
    first = convert(source, cache_dir=cache)
    before = first.stat()
    second = convert(source, cache_dir=cache)
    assert second == first
    after = second.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert first.name.endswith(f"-v{CONVERTER_VERSION}-f16.gguf")
    assert sorted(p.name for p in cache.iterdir()) == [first.name]  # no temporary left over


def test_default_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "cloudlet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "cloudlet"


def test_cls_pooling_is_carried_over(tmp_path: Path) -> None:
    path = convert(_checkpoint(tmp_path / "m", pooling="cls"), cache_dir=tmp_path / "c")
    assert _field(gguf.GGUFReader(path), "bert.pooling_type") == gguf.PoolingType.CLS


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [({"lowercase": False}, "cased"), ({"pooling": "max"}, "pooling")],
)
def test_unsupported_checkpoints_are_refused(
    tmp_path: Path, kwargs: dict[str, Any], problem: str
) -> None:
    with pytest.raises(EngineUnavailable, match=problem):
        convert(_checkpoint(tmp_path / "m", **kwargs), cache_dir=tmp_path / "c")
    assert list((tmp_path / "c").glob("*")) == []


def test_a_broken_checkpoint_is_engine_unavailable(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path / "m")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(EngineUnavailable):
        convert(folder, cache_dir=tmp_path / "c")


def test_read_safetensors_round_trips() -> None:
    weights = _weights()
    read = read_safetensors(_safetensors(weights))
    assert read.keys() == weights.keys()
    for name, array in weights.items():
        np.testing.assert_array_equal(read[name], array)
