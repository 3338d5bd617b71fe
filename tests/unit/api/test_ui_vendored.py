"""The dashboard's vendored files are exactly the published ones recorded in VENDORED.md."""

from __future__ import annotations

import hashlib
import re

from cloudlet.api.ui.templating import STATIC

VENDOR = STATIC / "vendor"
ROW = re.compile(r"^\| (\S+) \| (\S+) \| (\S+) \| (\S+) \| (\S+) \| ([0-9a-f]{64}) \|$")


def test_every_vendored_file_matches_its_recorded_hash_and_has_a_licence() -> None:
    rows = [
        m.groups()
        for line in (VENDOR / "VENDORED.md").read_text().splitlines()
        if (m := ROW.match(line))
    ]
    recorded = {name: digest for name, *_, digest in rows}
    present = {p.name for p in VENDOR.iterdir() if p.name != "VENDORED.md"}
    assert present == set(recorded), "every vendored file is listed, and only those"
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    licences = {package: licence for _, package, _, _, licence, _ in rows}
    assert licences == {"htmx.org": "0BSD", "uplot": "MIT"}
    assert {"htmx.LICENSE", "uPlot.LICENSE"} <= present


def test_the_pages_load_only_vendored_or_own_scripts() -> None:
    base = (STATIC.parent / "templates" / "base.html").read_text()
    scripts = re.findall(r'<script src="([^"]+)"', base)
    assert scripts == [
        "/ui/static/vendor/htmx.min.js",
        "/ui/static/vendor/uPlot.iife.min.js",
        "/ui/static/dashboard.js",
    ]
    assert "<script>" not in base
