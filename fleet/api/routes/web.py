"""The web page at ``/``: devices with their state and the latest pages, refreshing itself."""

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from fleet.api.deps import StateDep

router = APIRouter(include_in_schema=False)


@cache
def _template() -> str:
    return resources.files("fleet.api.static").joinpath("index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse)
def index(state: StateDep) -> HTMLResponse:
    refresh_ms = int(state.config.http.page_refresh_s * 1000)
    html = _template().replace("__REFRESH_MS__", str(refresh_ms))
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
