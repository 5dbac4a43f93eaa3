"""The web page at ``/``: devices with their state and the latest pages, refreshing itself."""

import html
from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from fleet.api.deps import StateDep
from fleet.auth.deps import CurrentUser

router = APIRouter(include_in_schema=False)


@cache
def _template() -> str:
    return resources.files("fleet.api.static").joinpath("index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse)
def index(state: StateDep, user: CurrentUser) -> HTMLResponse:
    """The page; its data comes from the API, so a unit's users see their units' devices only."""
    refresh_ms = int(state.config.http.page_refresh_s * 1000)
    page = _template().replace("__REFRESH_MS__", str(refresh_ms)).replace("__USER__", html.escape(user.name))
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
