"""The dashboard at ``/ui``: server-rendered pages, served by cloudlet itself, no CDN.

Views: Models (served models and routes, status, openness class and licence from the cards),
Traffic (requests/s, time to first token, tokens/s, queue depth per model), Cost (local vs
cloud, savings against the cloud-equivalent price, spill share, cloud budget burn-down), Usage
(by team and key from the ledger, over a chosen period) and Recent requests. Pages are Jinja2
templates; htmx (0BSD) and uPlot (MIT) are vendored under ``static/vendor`` (see VENDORED.md
there), so the dashboard works offline.

Who may look: :mod:`cloudlet.api.ui.auth`. What it reads: the app's live feed
(:class:`cloudlet.observe.live.LiveFeed`, a sink of every request's record), the gateway's
stats and status, the card catalog and the ledger, all at the time a page asks.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from cloudlet.api.ui import auth, pages
from cloudlet.api.ui.session import Sessions
from cloudlet.api.ui.templating import STATIC
from cloudlet.gateway.life import Recorder
from cloudlet.observe.live import LiveFeed

__all__ = ["install_ui"]


def install_ui(app: FastAPI, recorder: Recorder, *, admin_key: str | None) -> LiveFeed:
    """Serve the dashboard from ``app``: its live feed becomes a sink of ``recorder`` (every
    request's record reaches it) and ``app.state.live``. ``admin_key`` is
    ``CLOUDLET_ADMIN_KEY`` (None: only open mode can see the dashboard)."""
    feed = LiveFeed(currency=recorder.currency)
    recorder.sinks.add(feed)
    app.state.live = feed
    app.state.ui_sessions = Sessions(admin_key)
    app.include_router(auth.router)
    app.include_router(pages.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC, follow_symlink=False), name="ui-static")
    return feed
