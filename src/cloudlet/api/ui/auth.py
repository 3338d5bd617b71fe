"""Who may see the dashboard: the admin key's session, or anyone in loopback open mode.

In open mode (loopback only, no admin key, no API key ever created: see
:mod:`cloudlet.gateway.tenancy`) the dashboard is as open as the API. Otherwise every page
and every data request needs a session made by logging in with ``CLOUDLET_ADMIN_KEY``
(:mod:`cloudlet.api.ui.session`): pages redirect to the login form, data answers 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from cloudlet.api.ui.session import COOKIE, Sessions, same_origin
from cloudlet.api.ui.templating import SECURITY_HEADERS, page
from cloudlet.errors import AuthenticationError, PermissionDenied
from cloudlet.gateway.tenancy import Tenancy

router = APIRouter(prefix="/ui", include_in_schema=False)
LOGIN = "/ui/login"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Someone allowed in: ``open`` when no login is needed; ``csrf`` for the logout form."""

    open: bool
    csrf: str = ""


def sessions(request: Request) -> Sessions:
    found: Sessions = request.app.state.ui_sessions
    return found


async def is_open(request: Request) -> bool:
    tenancy: Tenancy | None = request.app.state.pipeline.tenancy
    return tenancy is not None and await tenancy.open_mode()


async def viewer(request: Request) -> Viewer | None:
    """The viewer of this request, or None when it must log in."""
    if await is_open(request):
        return Viewer(open=True)
    cookie = request.cookies.get(COOKIE)
    store = sessions(request)
    if store.valid(cookie):
        return Viewer(open=False, csrf=store.csrf(cookie))
    return None


async def data_viewer(request: Request) -> Viewer:
    """For data and fragments: the viewer, or a 401 in the OpenAI error envelope."""
    found = await viewer(request)
    if found is None:
        raise AuthenticationError("The dashboard needs a login with the admin key.")
    return found


def to_login() -> Response:
    return RedirectResponse(LOGIN, status_code=303, headers={"cache-control": "no-store"})


@router.get("/login")
async def login_form(request: Request) -> Response:
    if await viewer(request) is not None:
        return RedirectResponse("/ui", status_code=303)
    return _login_page(request, None)


@router.post("/login")
async def login(request: Request) -> Response:
    if not same_origin(request.headers.get("origin"), request.headers.get("host")):
        raise PermissionDenied("Cross-site login refused.")
    form = parse_qs((await request.body()).decode(errors="replace"), max_num_fields=4)
    key = (form.get("key") or [""])[0].strip()
    store = sessions(request)
    if not store.check_key(key):
        return _login_page(request, "That is not the admin key.", status_code=401)
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(
        COOKIE,
        store.issue(),
        max_age=store.max_age_s,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.headers.update(SECURITY_HEADERS)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    if not same_origin(request.headers.get("origin"), request.headers.get("host")):
        raise PermissionDenied("Cross-site logout refused.")
    form = parse_qs((await request.body()).decode(errors="replace"), max_num_fields=4)
    token = (form.get("csrf") or [""])[0]
    cookie = request.cookies.get(COOKIE)
    store = sessions(request)
    if not store.check_csrf(cookie, token):
        raise PermissionDenied("Logout needs the page's CSRF token.")
    store.revoke(cookie)
    response = to_login()
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


def _login_page(request: Request, error: str | None, *, status_code: int = 200) -> Response:
    return page(
        request,
        "login.html",
        {"error": error, "enabled": sessions(request).enabled, "view": "login", "viewer": None},
        status_code=status_code,
    )
