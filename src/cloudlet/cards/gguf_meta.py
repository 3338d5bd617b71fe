"""What a model file says about itself: GGUF ``general.*`` metadata and the file's own facts.

A card starts from here so that every served model has at least an identity, a licence and an
exact artifact (format, sha256, quantization), even when nobody wrote a card for it. GGUF files
written by llama.cpp's converters carry the Hugging Face repository's metadata (``general.name``,
``general.license`` as a Hugging Face tag, ``general.base_model.*``, ``general.dataset.*``).

Reading a GGUF header parses the whole tokenizer (about two seconds for SmolLM2), and hashing
reads every byte, so both results are cached per (path, size, mtime).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cloudlet.cards.licenses import normalize_license
from cloudlet.errors import SpecError

GGUF_MAGIC = b"GGUF"
#: GGUF architectures that are transformer decoders, in the MOF schema's vocabulary.
_DECODERS = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi2",
     "phi3", "gpt2", "gptneox", "falcon", "starcoder", "starcoder2", "stablelm", "olmo",
     "olmo2", "granite", "smollm3", "deepseek2", "command-r", "internlm2", "mpt", "bloom"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reference:
    """A base model or dataset named in GGUF metadata."""

    name: str
    organization: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class FileFacts:
    """Facts any model file has: where it is, how big, its digest and its format."""

    file_name: str
    size_bytes: int
    sha256: str
    format: str


@dataclass(frozen=True, slots=True)
class GgufFacts:
    """The ``general.*`` keys a card uses, plus what the tensors and header tell."""

    name: str | None
    basename: str | None
    organization: str | None
    finetune: str | None
    size_label: str | None
    version: str | None
    description: str | None
    license_raw: str | None
    license: str | None
    license_name: str | None
    license_link: str | None
    languages: tuple[str, ...]
    tags: tuple[str, ...]
    url: str | None
    repo_url: str | None
    architecture: str | None
    decoder: bool
    context_length: int | None
    quantization: str | None
    quantization_version: int | None
    parameter_count: int
    gguf_version: int | None
    base_models: tuple[Reference, ...]
    datasets: tuple[Reference, ...]


def file_facts(path: Path) -> FileFacts:
    """Size, sha256 and format of a model file (``gguf`` by magic number, else its suffix)."""
    stat = path.stat()
    return _file_facts(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def read_gguf(path: Path) -> GgufFacts:
    """Read the metadata of a GGUF file; a file that is not one is a SpecError naming it."""
    stat = path.stat()
    return _read_gguf(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _file_facts(path: str, size: int, mtime_ns: int) -> FileFacts:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    file_path = Path(path)
    fmt = "gguf" if is_gguf(file_path) else (file_path.suffix.lstrip(".").lower() or "file")
    return FileFacts(file_path.name, size, digest.hexdigest(), fmt)


@lru_cache(maxsize=64)
def _read_gguf(path: str, size: int, mtime_ns: int) -> GgufFacts:
    from gguf import GGUFReader, LlamaFileType  # heavy (numpy); only when a card is built

    try:
        reader = GGUFReader(path)
    except (ValueError, OSError, IndexError, KeyError) as exc:  # gguf's own parse errors
        raise SpecError(path, [("(file)", f"not a readable GGUF file: {exc}")]) from exc
    kv = {name: _value(field) for name, field in reader.fields.items()}

    def text(key: str) -> str | None:
        value = kv.get(key)
        return str(value).strip() or None if value is not None else None

    arch = text("general.architecture")
    file_type = kv.get("general.file_type")
    quantization = None
    if isinstance(file_type, int):
        try:
            quantization = (
                LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
            )
        except ValueError:
            quantization = f"file_type {file_type}"
    context = kv.get(f"{arch}.context_length") if arch else None
    license_raw = text("general.license")
    return GgufFacts(
        name=text("general.name"),
        basename=text("general.basename"),
        organization=text("general.organization"),
        finetune=text("general.finetune"),
        size_label=text("general.size_label"),
        version=text("general.version"),
        description=text("general.description"),
        license_raw=license_raw,
        license=normalize_license(license_raw),
        license_name=text("general.license.name"),
        license_link=text("general.license.link"),
        languages=_strings(kv.get("general.languages")),
        tags=_strings(kv.get("general.tags")),
        url=text("general.url"),
        repo_url=text("general.repo_url") or text("general.source.repo_url"),
        architecture=arch,
        decoder=arch in _DECODERS,
        context_length=context if isinstance(context, int) else None,
        quantization=quantization,
        quantization_version=_int(kv.get("general.quantization_version")),
        parameter_count=sum(int(t.n_elements) for t in reader.tensors),
        gguf_version=_int(kv.get("GGUF.version")),
        base_models=_references(kv, "general.base_model"),
        datasets=_references(kv, "general.dataset"),
    )


def _value(field: Any) -> Any:
    """A field's Python value (``ReaderField.contents``); None if it cannot be decoded."""
    try:
        return field.contents()
    except (AttributeError, ValueError, IndexError, TypeError):
        return None


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return (str(value),) if value else ()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _references(kv: dict[str, Any], prefix: str) -> tuple[Reference, ...]:
    count = _int(kv.get(f"{prefix}.count")) or 0
    out = []
    for i in range(count):
        name = kv.get(f"{prefix}.{i}.name")
        if not name:
            continue
        url = kv.get(f"{prefix}.{i}.repo_url") or kv.get(f"{prefix}.{i}.url")
        org = kv.get(f"{prefix}.{i}.organization")
        out.append(Reference(str(name), str(org) if org else None, str(url) if url else None))
    return tuple(out)
