"""`cloudlet serve` refuses to start with one line and its own exit code, before loading."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REMOTE = """
models:
  - name: mistral-small
    engine: openai
    url: http://127.0.0.1:9/v1
    api_key: ${I13_UNSET_KEY}
"""


def serve(tmp_path: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(config)
    env = {k: v for k, v in os.environ.items() if k != "I13_UNSET_KEY"}
    env.update(COLUMNS="200", XDG_DATA_HOME=str(tmp_path / "data"))
    return subprocess.run(
        [sys.executable, "-m", "cloudlet", "serve", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_an_unset_api_key_variable_exits_2_with_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, REMOTE)
    assert result.returncode == 2
    out = (result.stdout + result.stderr).strip()
    assert out == (
        "error: model 'mistral-small': api_key refers to ${I13_UNSET_KEY}, "
        "which is not set in the environment"
    )


def test_a_busy_port_exits_6_with_one_line(tmp_path: Path) -> None:
    config = REMOTE.replace("    api_key: ${I13_UNSET_KEY}\n", "")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(tmp_path, config, "--port", str(port))
    assert result.returncode == 6  # not 3 (the policy) nor 4 (the ledger)
    out = (result.stdout + result.stderr).strip()
    assert out.startswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "Traceback" not in out and "\n" not in out
