"""The web pages (Vietnamese / English, no build step), each a static page drawing from the API:

* ``/``: devices with their state and the latest pages, refreshing itself;
* ``/fleet``: the fleet screen (``?device=<id>`` opens one device, ``?lang=en`` English), from
  ``/api/v1/fleet``;
* ``/progress``: the digitization progress dashboard, from ``/api/v1/progress``;
* ``/dossiers``: the dossier registry: received vs digitized per unit, the chase list (and its
  XLSX), the digitized codes matching nothing, the walk-ins to name, one dossier's documents and
  pages (``?code=``, ``?unit=``, ``?from=``, ``?to=``, ``?lang=en``), from ``/api/v1/dossiers``;
* ``/deliveries``: the delivery of signed documents to the one-stop system: backlog per target,
  failed deliveries with their reason, retry and cancel for admins (``?lang=en``);
* ``/operations``: rollouts with their phases and per-device progress, desired vs reported
  settings, commands (``?view=rollouts|settings|commands``, ``?rollout=<id>``, ``?device=<id>``);
* ``/admin``: the admin forms (``?view=enrollment|users|units|audit|device|settings|updates``):
  enrollment tokens (issued with the CA pin and a QR code, shown once; revoked; a printable setup
  sheet of tokens for a batch of SD cards), pending enrollments (accept, reject with a
  reason), users (create, role or unit, disable, password), the unit tree's CSV import (its
  problems by line) and the targets, the audit log with its filters, one device
  (``&device=<id>``: send a command with its arguments and follow it, download what
  ``collect_logs`` returned, move it to another unit, revoke after a confirmation), desired
  settings per fleet, unit or device (checked against the contract as the admin types), bundles
  (upload, list) and the rollout wizard (bundle, targets, phases and thresholds; pause, resume,
  cancel); each
  form calls the JSON API, which applies the roles, the unit scope and the audit;
* ``/static/operators.js``: the admin page's counter operators view (``/admin?view=operators``:
  add a unit's clerk or postal staff with a PIN and/or a staff card whose QR is shown once, list
  per unit, new PIN, new card, retire or bring back), from ``/api/v1/operators``;
* ``/static/display.js``: the time format in the province's zone and the document type names
  (:mod:`fleet.display`), included by every page before its own script;
* ``/static/nav.js``: the navigation bar every page includes with one line (links between the
  pages, the signed-in user and role, log out).

Every page is served behind the login (the guard, :mod:`fleet.auth.guard`); their data comes
from the API, so a unit's users see their units' devices only. The login page is
:mod:`fleet.api.routes.login`.
"""

from functools import cache
from importlib import resources
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from fleet import display
from fleet.api.deps import StateDep
from fleet.auth.deps import CurrentUser
from fleet.progress import periods
from fleet.progress.models import TIERS

router = APIRouter(include_in_schema=False)


@cache
def _static(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def _page(html: str) -> HTMLResponse:
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def _refresh_ms(state: StateDep) -> str:
    return str(int(state.config.http.page_refresh_s * 1000))


@router.get("/", response_class=HTMLResponse)
def index(state: StateDep, _: CurrentUser) -> HTMLResponse:
    """Devices and their latest pages."""
    return _page(_static("fleet.api.static", "index.html").replace("__REFRESH_MS__", _refresh_ms(state)))


@router.get("/static/nav.js")
def nav_script() -> Response:
    """The shared navigation bar (``<script src="/static/nav.js" defer></script>``)."""
    return Response(_static("fleet.api.static", "nav.js"), media_type="text/javascript; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})


@router.get("/static/operators.js")
def operators_script() -> Response:
    """The admin page's counter operators view (:mod:`fleet.operators`)."""
    return Response(_static("fleet.operators", "admin.js"), media_type="text/javascript; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})


@router.get("/static/admin/{name}.js")
def admin_script(name: Literal["schema", "settings", "updates", "sheet"]) -> Response:
    """The admin page's sections in their own scripts: forms drawn from the contract's schemas,
    desired settings, bundles and rollouts, the SD cards' setup sheet."""
    return Response(_static("fleet.api.static.admin", f"{name}.js"), media_type="text/javascript; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})


@router.get("/static/display.js")
def display_script(state: StateDep) -> Response:
    """The time format and zone and the document type names every page uses (:mod:`fleet.display`)."""
    return Response(display.script(state.config.time_zone), media_type="text/javascript; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})


@router.get("/fleet", response_class=HTMLResponse)
def fleet_screen(state: StateDep, _: CurrentUser) -> HTMLResponse:
    """The fleet screen; ``?device=<id>`` opens one device, ``?lang=en`` English."""
    return _page(_static("fleet.alerts", "fleet.html").replace("__REFRESH_MS__", _refresh_ms(state)))


@router.get("/progress", response_class=HTMLResponse)
def dashboard(state: StateDep, _: CurrentUser) -> HTMLResponse:
    """The progress dashboard, drawing from ``/api/v1/progress``."""
    html = _static("fleet.progress", "dashboard.html")
    month = periods.of(state.now(), state.config.time_zone)
    return _page(html.replace("__THIS_MONTH__", month).replace("__TIERS__", ",".join(TIERS)))


@router.get("/operations", response_class=HTMLResponse)
def operations_page(state: StateDep) -> HTMLResponse:
    """Rollouts, settings and commands."""
    return _page(_static("fleet.operations", "operations.html").replace("__REFRESH_MS__", _refresh_ms(state)))


@router.get("/dossiers", response_class=HTMLResponse)
def dossiers_page(state: StateDep, _: CurrentUser) -> HTMLResponse:
    """The dossier registry's page, drawing from ``/api/v1/dossiers``."""
    month = periods.of(state.now(), state.config.time_zone)
    return _page(_static("fleet.dossiers", "dossiers.html").replace("__THIS_MONTH__", month))


@router.get("/deliveries", response_class=HTMLResponse)
def deliveries_page(state: StateDep, _: CurrentUser) -> HTMLResponse:
    """The delivery outbox per target, failed deliveries with their reason, retry and cancel
    (admins), drawing from ``/api/v1/deliveries``. It refreshes itself, at most every 10 s."""
    refresh = str(int(max(state.config.http.page_refresh_s, 10.0) * 1000))
    return _page(_static("fleet.delivery", "deliveries.html").replace("__REFRESH_MS__", refresh))


@router.get("/admin", response_class=HTMLResponse)
def admin_page(_: CurrentUser) -> HTMLResponse:
    """The admin forms: enrollment, users, units and targets, audit log, one device, settings,
    updates (``?view=``)."""
    return _page(_static("fleet.api.static", "admin.html"))
