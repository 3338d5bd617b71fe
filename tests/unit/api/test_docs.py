"""/docs and /redoc load nothing from the internet: their assets are served here."""

import re

from fastapi.testclient import TestClient


def test_docs_pages_use_local_assets_only(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text)
        urls += re.findall(r"""url: ?["']([^"']+)["']""", r.text)
        assert urls, r.text
        assert not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
        for url in urls:
            if url.startswith("/docs/assets/"):
                asset = client.get(url)
                assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert "/docs/assets/swagger-ui-bundle.js" in client.get("/docs").text
