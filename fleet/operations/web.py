"""The operations page at ``/operations`` (Vietnamese / English, no build step): rollouts with
their phases, per-device progress and the pause / resume / cancel buttons (admins), every
device's desired vs reported settings with the differences highlighted, and the commands with
their states. It draws from the operations API (``fleet/api/routes/operations.py``).

``?view=rollouts|settings|commands``, ``?rollout=<id>`` or ``?device=<id>`` open one object,
``?lang=en`` English.
"""

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from fleet.api.deps import StateDep

router = APIRouter()


@cache
def _page() -> str:
    return resources.files("fleet.operations").joinpath("operations.html").read_text(encoding="utf-8")


@router.get("/operations", response_class=HTMLResponse, include_in_schema=False)
def operations_page(state: StateDep) -> HTMLResponse:
    html = _page().replace("__REFRESH_MS__", str(int(state.config.http.page_refresh_s * 1000)))
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
