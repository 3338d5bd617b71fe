"""Convert a sentence-transformers BERT checkpoint (a .zip or its extracted folder) to GGUF.

Why this exists: the bundled embedding model (all-MiniLM-L6-v2) ships as Hugging Face
safetensors plus a ``tokenizer.json``, but llama.cpp only loads GGUF, and llama.cpp's own
converter needs PyTorch and transformers. The checkpoint is small and plain (f32 BERT), so we
read it with numpy, name the tensors with gguf's :class:`~gguf.TensorNameMap` for
``MODEL_ARCH.BERT`` and write the WordPiece vocabulary in the "phantom space" form llama.cpp's
WPM tokenizer expects (what ``convert_hf_to_gguf.py`` does for ``BertModel``).

Conversion takes a few seconds, so its result is cached: the file is named by the source's
sha256 (plus the converter version and tensor type), written to a temporary name and renamed
into place, so concurrent starts never see half a file and a second start converts nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np
import numpy.typing as npt

from cloudlet.errors import EngineUnavailable

TensorType = Literal["f32", "f16"]
# Bump when the written file changes, so caches made by older code are not reused.
CONVERTER_VERSION = 1
PHANTOM_SPACE = "\u2581"

_SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}
_POOLING = {
    "pooling_mode_mean_tokens": gguf.PoolingType.MEAN,
    "pooling_mode_cls_token": gguf.PoolingType.CLS,
    "pooling_mode_lasttoken": gguf.PoolingType.LAST,
}
# Tensors BERT checkpoints carry that an embedding model does not use.
_SKIPPED = ("embeddings.position_ids", "pooler.", "cls.")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cloudlet``, else ``~/.cache/cloudlet`` (read per call, not at import)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cloudlet"


def convert(
    source: Path, *, cache_dir: Path | None = None, tensor_type: TensorType = "f16"
) -> Path:
    """Return the GGUF file for ``source`` (a sentence-transformers .zip or folder).

    Converts only when the cache has no file for this source's content. f16 matrices (the
    default) keep cosine >= 0.99999 with sentence-transformers' f32 output at half the size and
    no loss of speed on CPU. Raises :class:`EngineUnavailable` for a checkpoint llama.cpp's BERT
    cannot run, or one that cannot be read or written.
    """
    try:
        read = _reader(source)
        digest = _digest(source)
        directory = cache_dir if cache_dir is not None else default_cache_dir()
        target = directory / f"{digest[:16]}-v{CONVERTER_VERSION}-{tensor_type}.gguf"
        if target.is_file():
            return target
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise EngineUnavailable(f"cannot prepare the GGUF cache for {source}: {exc}") from exc
    os.close(fd)
    try:
        _write(read, Path(tmp_name), source.stem, tensor_type)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it owner-only; a cache is fine to share
        os.replace(tmp_name, target)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise EngineUnavailable(f"cannot convert {source} to GGUF: {exc!r}") from exc
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def read_safetensors(data: bytes) -> dict[str, npt.NDArray[Any]]:
    """Tensors of a safetensors blob, as read-only numpy views (no copy).

    The format is an 8-byte little-endian header length, a JSON header mapping each name to
    dtype, shape and byte offsets, then the raw little-endian data.
    """
    (header_len,) = struct.unpack_from("<Q", data)
    header: dict[str, Any] = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors: dict[str, npt.NDArray[Any]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise EngineUnavailable(f"safetensors dtype {entry['dtype']} of {name} is unsupported")
        begin, end = entry["data_offsets"]
        flat = np.frombuffer(
            data, dtype=dtype, count=(end - begin) // np.dtype(dtype).itemsize, offset=base + begin
        )
        tensors[name] = flat.reshape(entry["shape"])
    return tensors


def _reader(source: Path) -> Callable[[str], bytes | None]:
    """A function returning a member file's bytes (None when absent), for a zip or a folder."""
    if source.is_dir():

        def read_dir(name: str) -> bytes | None:
            path = source / name
            return path.read_bytes() if path.is_file() else None

        return read_dir
    if not zipfile.is_zipfile(source):
        raise EngineUnavailable(f"{source} is neither a folder nor a zip archive")

    def read_zip(name: str) -> bytes | None:
        with zipfile.ZipFile(source) as archive:
            try:
                return archive.read(name)
            except KeyError:
                return None

    return read_zip


def _digest(source: Path) -> str:
    """sha256 of the zip, or of the folder's file names and contents."""
    h = hashlib.sha256()
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            h.update(str(path.relative_to(source)).encode() + b"\0")
            with path.open("rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
        return h.hexdigest()
    with source.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _json(read: Callable[[str], bytes | None], name: str, *, required: bool = True) -> Any:
    data = read(name)
    if data is None:
        if required:
            raise EngineUnavailable(f"model checkpoint has no {name}")
        return None
    return json.loads(data)


def _pooling(read: Callable[[str], bytes | None]) -> gguf.PoolingType:
    """The pooling the sentence-transformers pipeline (modules.json) applies."""
    modules = _json(read, "modules.json", required=False) or []
    for module in modules:
        kind = module.get("type", "").rsplit(".", 1)[-1]
        if kind == "Pooling":
            config = _json(read, f"{module['path']}/config.json")
            for key, pooling in _POOLING.items():
                if config.get(key):
                    return pooling
            raise EngineUnavailable(f"pooling {config} is not supported by llama.cpp")
        if kind not in ("Transformer", "Normalize"):
            raise EngineUnavailable(f"sentence-transformers module {kind} is not supported")
    return gguf.PoolingType.MEAN


def _vocab(
    read: Callable[[str], bytes | None], vocab_size: int
) -> tuple[list[str], list[int], dict[str, int]]:
    """Tokens in llama.cpp's phantom-space form, their types, and the special token ids."""
    tokenizer = _json(read, "tokenizer.json")
    model, normalizer = tokenizer["model"], tokenizer.get("normalizer") or {}
    if model.get("type") != "WordPiece":
        raise EngineUnavailable(f"tokenizer {model.get('type')} is not WordPiece")
    if not normalizer.get("lowercase", False):
        # llama.cpp's WPM tokenizer always lowercases: a cased model would get wrong ids.
        raise EngineUnavailable("cased WordPiece tokenizers are not supported by llama.cpp")
    by_id = {index: token for token, index in model["vocab"].items()}
    added = {t["id"]: t for t in tokenizer.get("added_tokens", [])}
    tokens: list[str] = []
    types: list[int] = []
    for index in range(max(vocab_size, len(by_id))):
        token = by_id.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added and added[index].get("special"):
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(token[2:] if token.startswith("##") else PHANTOM_SPACE + token)
            types.append(gguf.TokenType.USER_DEFINED if index in added else gguf.TokenType.NORMAL)
    config = _json(read, "tokenizer_config.json", required=False) or {}
    names = {
        role: config.get(f"{role}_token", f"[{role.upper()}]")
        for role in ("cls", "sep", "unk", "pad", "mask")
    }
    special = {role: model["vocab"][name] for role, name in names.items() if name in model["vocab"]}
    if "cls" not in special or "sep" not in special:
        raise EngineUnavailable("tokenizer has no [CLS]/[SEP] token")
    return tokens, types, special


def _write(read: Callable[[str], bytes | None], out: Path, name: str, kind: TensorType) -> None:
    config = _json(read, "config.json")
    if (
        config.get("model_type") != "bert"
        or config.get("position_embedding_type", "absolute") != "absolute"
    ):
        raise EngineUnavailable("only BERT checkpoints with absolute positions are supported")
    weights = read("model.safetensors")
    if weights is None:
        raise EngineUnavailable("model checkpoint has no model.safetensors")
    tokens, types, special = _vocab(read, int(config["vocab_size"]))

    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_name(name)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_pooling_type(_pooling(read))
    writer.add_file_type(
        gguf.LlamaFileType.ALL_F32 if kind == "f32" else gguf.LlamaFileType.MOSTLY_F16
    )

    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_type_count(int(config.get("type_vocab_size", 1)))
    # llama.cpp's BERT input is [CLS] text [SEP]: [CLS] doubles as BOS, [SEP] is added as SEP.
    writer.add_bos_token_id(special["cls"])
    writer.add_uint32("tokenizer.ggml.cls_token_id", special["cls"])  # no gguf-py helper yet
    writer.add_sep_token_id(special["sep"])
    for role, add in (
        ("unk", writer.add_unk_token_id),
        ("pad", writer.add_pad_token_id),
        ("mask", writer.add_mask_token_id),
    ):
        if role in special:
            add(special[role])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)
    writer.add_add_eos_token(False)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, int(config["num_hidden_layers"]))
    for hf_name, tensor in read_safetensors(weights).items():
        hf_name = hf_name.removeprefix("bert.")
        if hf_name.startswith(_SKIPPED):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise EngineUnavailable(f"tensor {hf_name} has no llama.cpp BERT counterpart")
        # Norms, biases and the tiny token-type table stay f32, as llama.cpp's converter does.
        half = kind == "f16" and tensor.ndim == 2 and not gguf_name.startswith("token_types")
        writer.add_tensor(gguf_name, tensor.astype(np.float16 if half else np.float32))

    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
