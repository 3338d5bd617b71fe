"""The dashboard at /ui, in process: who may see it, what each view says, its headers.

The browser tests (tests/integration/test_dashboard_browser.py) drive the same pages in
Chromium against a real server; these check the rules and the numbers quickly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloudlet.api import create_app
from cloudlet.api.ui.session import COOKIE
from cloudlet.config import Spec, load_spec
from cloudlet.observe.live import LiveFeed
from tests.fakes import FakeChatEngine
from tests.unit.observe.live_records import T0, rec

ADMIN = "admin-secret-for-ui-tests"
PAGES = ("/ui", "/ui/traffic", "/ui/cost", "/ui/usage", "/ui/requests")
DATA = ("/ui/data/traffic", "/ui/data/cost", "/ui/data/usage")
PARTS = ("/ui/part/models", "/ui/part/traffic", "/ui/part/cost", "/ui/part/requests")

SPEC = """
server: {{host: "{host}"}}
storage: {{ledger: "{ledger}"}}
models:
  - name: local
    engine: openai
    url: http://127.0.0.1:9/v1
    health_check: {{interval_s: 0}}
  - name: cloud
    engine: openai
    url: http://127.0.0.1:9/v1
    cloud: true
    price: {{input_per_mtok: 1, output_per_mtok: 2}}
    health_check: {{interval_s: 0}}
routes:
  - name: chat
    targets: [local, cloud]
    policy: local-first
    cloud_budget: {{per_day: 10, currency: USD}}
"""


def spec(tmp_path: Path, host: str = "127.0.0.1", ledger: str | None = None) -> Spec:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(SPEC.format(host=host, ledger=ledger or f"sqlite:///{tmp_path}/ledger.db"))
    return load_spec(path, environ={})


def client_for(tmp_path: Path, admin_key: str | None = None, **kw: Any) -> TestClient:
    engines = {"local": FakeChatEngine("local"), "cloud": FakeChatEngine("cloud")}
    app = create_app(spec(tmp_path, **kw), engines, admin_key=admin_key)  # type: ignore[arg-type]
    return TestClient(app, raise_server_exceptions=False, follow_redirects=False)


@pytest.fixture
def open_client(tmp_path: Path) -> Iterator[TestClient]:
    with client_for(tmp_path) as client:
        yield client


@pytest.fixture
def closed_client(tmp_path: Path) -> Iterator[TestClient]:
    with client_for(tmp_path, admin_key=ADMIN) as client:
        yield client


def feed(client: TestClient) -> LiveFeed:
    live: LiveFeed = client.app.state.live  # type: ignore[attr-defined]
    return live


def login(client: TestClient, key: str = ADMIN) -> Any:
    return client.post(
        "/ui/login",
        content=f"key={key}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


def test_open_mode_shows_everything_without_login(open_client: TestClient) -> None:
    for path in PAGES + DATA + PARTS:
        response = open_client.get(path)
        assert response.status_code == 200, (path, response.text)
    page = open_client.get("/ui").text
    assert "open mode" in page
    assert "Log out" not in page
    assert open_client.get("/ui/login").headers["location"] == "/ui"


def test_off_open_mode_nothing_is_visible_without_login(closed_client: TestClient) -> None:
    feed(closed_client).record(rec("req-secret-1"))
    for path in PAGES:
        response = closed_client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/ui/login"
        assert "req-secret-1" not in response.text
    for path in DATA + PARTS:
        response = closed_client.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "invalid_api_key"
    form = closed_client.get("/ui/login")
    assert form.status_code == 200
    assert 'name="key"' in form.text
    assert "local" not in form.text and "req-secret-1" not in form.text


def test_login_sets_a_strict_httponly_cookie_without_the_key(closed_client: TestClient) -> None:
    wrong = login(closed_client, "not-the-key")
    assert wrong.status_code == 401
    assert "not the admin key" in wrong.text
    assert COOKIE not in wrong.cookies
    response = login(closed_client)
    assert response.status_code == 303 and response.headers["location"] == "/ui"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert ADMIN not in cookie
    for path in PAGES + DATA + PARTS:
        assert closed_client.get(path).status_code == 200, path
    # The API does not take the dashboard's cookie as a key.
    assert closed_client.get("/v1/models").status_code == 401


def test_a_forged_or_foreign_cookie_is_refused(tmp_path: Path) -> None:
    with client_for(tmp_path, admin_key="another-admin-key") as other:
        foreign = login(other, "another-admin-key").cookies[COOKIE]
    with client_for(tmp_path, admin_key=ADMIN) as client:
        for value in (foreign, "9999999999.nonce.deadbeef", ADMIN, ""):
            client.cookies.set(COOKIE, value, path="/ui")
            assert client.get("/ui").status_code == 303
            assert client.get("/ui/data/traffic").status_code == 401


def test_logout_needs_the_csrf_token_and_ends_the_session(closed_client: TestClient) -> None:
    session = login(closed_client).cookies[COOKIE]
    page = closed_client.get("/ui").text
    token = page.split('name="csrf" value="')[1].split('"')[0]
    form = {"content-type": "application/x-www-form-urlencoded"}
    refused = closed_client.post("/ui/logout", content="csrf=wrong", headers=form)
    assert refused.status_code == 403
    assert closed_client.get("/ui").status_code == 200  # still logged in
    cross = closed_client.post(
        "/ui/logout", content=f"csrf={token}", headers={**form, "origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    out = closed_client.post("/ui/logout", content=f"csrf={token}", headers=form)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert 'cloudlet_ui=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    closed_client.cookies.set(COOKIE, session, path="/ui")  # replayed after logout
    assert closed_client.get("/ui").status_code == 303


def test_cross_site_login_is_refused(closed_client: TestClient) -> None:
    response = closed_client.post(
        "/ui/login",
        content=f"key={ADMIN}",
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "origin": "https://evil.example",
        },
    )
    assert response.status_code == 403
    assert COOKIE not in response.cookies


def test_once_a_key_exists_without_an_admin_key_nobody_can_log_in(tmp_path: Path) -> None:
    # A key made in the ledger ends open mode; with no admin key the dashboard stays shut.
    with client_for(tmp_path, admin_key=ADMIN) as admin:
        made = admin.post("/admin/keys", json={"team": "t"}, headers={"x-api-key": ADMIN})
        assert made.status_code == 201
    with client_for(tmp_path) as client:
        assert client.get("/ui").status_code == 303
        form = client.get("/ui/login").text
        assert "no admin key" in form and 'name="key"' not in form
        assert login(client, made.json()["key"]).status_code == 401  # API keys are not admin


def test_pages_carry_a_strict_csp_and_no_inline_script(open_client: TestClient) -> None:
    for path in (*PAGES, "/ui/login"):
        response = open_client.get(path)
        if response.status_code == 303:
            continue
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        html = response.text
        for tag in html.split("<script")[1:]:
            assert tag.lstrip().startswith("src=")  # every script is a file of this server
        assert "style=" not in html and "<style" not in html
        assert "http://" not in html.replace('xmlns="http://www.w3.org', "")  # no CDN


def test_models_view_lists_models_routes_and_openness(open_client: TestClient) -> None:
    page = open_client.get("/ui").text
    for name in ("local", "cloud", "chat"):
        assert f'data-model="{name}"' in page
    assert "local → cloud" in page  # the route's targets
    assert "Unclassified" in page  # no card: the MOF class is unknown
    assert "1 / 2 USD per Mtok" in page


def test_views_show_recorded_requests(open_client: TestClient) -> None:
    live = LiveFeed(clock=lambda: T0 + 600)  # every record in one bucket, read as of then
    open_client.app.state.live = live  # type: ignore[attr-defined]
    live.record(rec("req-local-1", cost="0.001", equivalent="0.004"))
    live.record(rec("req-local-2", cost="0.001", equivalent="0.004"))
    live.record(
        rec("req-cloud-1", target="cloud", cloud=True, spilled=True, cost="0.5", equivalent="0.1")
    )
    rows = open_client.get("/ui/part/requests").text
    assert rows.index("req-cloud-1") < rows.index("req-local-2") < rows.index("req-local-1")
    assert '<td class="spilled">yes</td>' in rows
    traffic = open_client.get("/ui/data/traffic").json()
    rps = traffic["charts"]["requests_per_s"]["series"]
    assert sum(rps["local"]) * traffic["bucket_s"] == pytest.approx(2)
    assert sum(rps["cloud"]) * traffic["bucket_s"] == pytest.approx(1)
    assert set(traffic["charts"]["queue_depth"]["series"]) == {"local", "cloud"}
    assert "local p50" in traffic["charts"]["ttft_s"]["series"]
    table = open_client.get("/ui/part/traffic").text
    assert '<tr data-model="local">' in table
    cost = open_client.get("/ui/part/cost").text
    assert 'id="cost-local">0.002<' in cost
    assert 'id="cost-cloud">0.5<' in cost
    assert 'id="cost-saved">0.006<' in cost
    assert 'id="cost-spilled">1 / 3<' in cost
    charts = open_client.get("/ui/data/cost").json()["charts"]
    assert charts["cost"]["series"]["cloud"][-1] == pytest.approx(0.5)
    assert charts["spill_share"]["series"]["chat"][-1] == pytest.approx(1 / 3)
    assert charts["budget_remaining"]["series"]["chat"][-1] == pytest.approx(10)


def test_usage_view_reads_the_ledger_and_checks_the_period(open_client: TestClient) -> None:
    page = open_client.get("/ui/usage?since=7d")
    assert page.status_code == 200
    assert '<option value="7d" selected>' in page.text
    bad = open_client.get("/ui/usage?since=yesterday")
    assert bad.status_code == 200 and "expected a duration" in bad.text
    assert open_client.get("/ui/data/usage?since=yesterday").status_code == 400
    assert open_client.get("/ui/usage?since=<script>").status_code == 400


def test_usage_view_without_a_ledger(tmp_path: Path) -> None:
    with client_for(tmp_path, ledger="off") as client:
        assert 'id="ledger-off"' in client.get("/ui/usage").text
        assert client.get("/ui/data/usage").json() == {"charts": {}}


def test_static_files_are_served(open_client: TestClient) -> None:
    for path in ("vendor/htmx.min.js", "vendor/uPlot.iife.min.js", "dashboard.js", "favicon.svg"):
        assert open_client.get(f"/ui/static/{path}").status_code == 200, path
    assert open_client.get("/ui/static/../templates/base.html").status_code == 404
    assert "/ui" not in str(open_client.get("/openapi.json").json()["paths"])


def test_requests_through_the_api_reach_every_view(open_client: TestClient) -> None:
    body = {"model": "local", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    ids = []
    for _ in range(3):
        response = open_client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        ids.append(response.headers["x-request-id"])
    refused = open_client.post("/v1/chat/completions", json={**body, "model": "nope"})
    assert refused.status_code == 404
    rows = open_client.get("/ui/part/requests").text
    for request_id in [*ids, refused.headers["x-request-id"]]:
        assert f'data-request-id="{request_id}"' in rows
    assert "refused" in rows
    table = open_client.get("/ui/part/traffic").text
    local_row = table.split('<tr data-model="local">')[1].split("</tr>")[0]
    assert '<td class="num requests">3</td>' in local_row
    deadline = time.monotonic() + 10  # the ledger writes its rows in batches, off the path
    while '<tr data-group="local">' not in (usage := open_client.get("/ui/usage?since=1h").text):
        assert time.monotonic() < deadline, "no usage row for open mode's team"
        time.sleep(0.05)
    team_row = usage.split('<tr data-group="local">')[1].split("</tr>")[0]
    assert '<td class="num requests">4</td>' in team_row  # the refused one has its row too
