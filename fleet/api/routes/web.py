"""The web page at ``/``: devices with their state and the latest pages, refreshing itself;
and ``/static/nav.js``, the navigation bar every page includes with one line (links between
the pages, the signed-in user and role, log out). It is served behind the login like the pages
that use it (it carries no data, but nobody else needs it)."""

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from fleet.api.deps import StateDep
from fleet.auth.deps import CurrentUser

router = APIRouter(include_in_schema=False)


@cache
def _static(name: str) -> str:
    return resources.files("fleet.api.static").joinpath(name).read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse)
def index(state: StateDep, _: CurrentUser) -> HTMLResponse:
    """The page; its data comes from the API, so a unit's users see their units' devices only."""
    refresh_ms = int(state.config.http.page_refresh_s * 1000)
    page = _static("index.html").replace("__REFRESH_MS__", str(refresh_ms))
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.get("/static/nav.js")
def nav_script() -> Response:
    """The shared navigation bar (``<script src="/static/nav.js" defer></script>``)."""
    return Response(_static("nav.js"), media_type="text/javascript; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})
