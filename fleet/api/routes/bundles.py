"""``/bundles`` (the list, for admins) and ``/bundles/{name}``: signed update bundles
(:class:`fleet.operations.bundles.BundleStore`). Uploads are the province admin's (sha256
computed at upload; with ``bundles.public_keys`` set, verified before they are kept); downloads
are answered with HTTP Range so devices resume them. A rollout's offer names the bundle with
``?rollout=<id>``: once that rollout is cancelled or halted the fleet answers 410, so an offer that waited in the
broker for an offline device (or on a device for its window) is never installed."""

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse

from fleet.api.deps import SessionDep, StateDep
from fleet.api.schemas.media import OCTETS, file_answer
from fleet.auth.deps import AdminUser, ProvinceAdmin
from fleet.enroll.deviceauth import device_or_user
from fleet.operations import rollouts
from fleet.operations.bundles import BUNDLE_NAME, BundleRefused, BundleStore, BundleTooLarge
from fleet.operations.schemas import BundleOut
from images.errors import SigningKeyError
from images.manifest import load_public_key

log = logging.getLogger(__name__)

router = APIRouter(prefix="/bundles", tags=["operations"])

BundleName = Annotated[str, Path(pattern=BUNDLE_NAME)]


@router.get("")
def list_bundles(state: StateDep, _user: AdminUser) -> list[BundleOut]:
    """The bundles held, newest first, to plan a rollout with."""
    store = BundleStore.of(state.config)
    return [BundleOut(name=name, size=size, sha256=store.sha256(name), stored_at=at)
            for name, size, at in store.bundles()]


@router.put("/{name}", status_code=201, responses={
    422: {"description": "Not a bundle signed by one of bundles.public_keys (nothing kept); detail says why"},
    503: {"description": "The configured public keys cannot be read"}})
async def put_bundle(name: BundleName, request: Request, state: StateDep, _user: ProvinceAdmin) -> BundleOut:
    """Upload a bundle (raw body). With ``bundles.public_keys`` configured it is verified as a
    device verifies it (signature, manifest, every file) before it is kept; each device checks
    it again before installing."""
    try:
        trusted = [load_public_key(path) for path in state.config.bundles.public_keys]
    except SigningKeyError as exc:
        log.error("bundle upload refused: %s", exc)
        raise HTTPException(503, "the fleet cannot read its bundle public keys") from None
    try:
        size, sha256, manifest = await BundleStore.of(state.config).save(name, request.stream(), trusted)
    except BundleTooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    except BundleRefused as exc:
        raise HTTPException(422, f"bundle refused: {exc}") from None
    return BundleOut(name=name, size=size, sha256=sha256, stored_at=state.now(), signature_checked=bool(trusted),
                     kind=manifest.kind if manifest else None, version=manifest.version if manifest else None)


@router.get("/{name}", name="get_bundle", response_class=FileResponse,
            responses={200: file_answer("The bundle", OCTETS), 206: file_answer("The range asked for", OCTETS),
                       410: {"description": "The rollout's offer is withdrawn"}})
def get_bundle(
    name: BundleName,
    state: StateDep,
    session: SessionDep,
    request: Request,
    rollout: Annotated[str | None, Query(max_length=64, description="The rollout whose offer names this URL")] = None,
) -> FileResponse:
    """The bundle file; ``Range`` requests are answered with 206 (resumed downloads). With
    ``rollout``: 410 once that rollout is cancelled or halted (the device installs nothing).
    For a device (a request signed with its certificate's key) or a user; 401 otherwise."""
    device_or_user(request, state)
    if rollout is not None and (why := rollouts.withdrawn(session, rollout, name)) is not None:
        raise HTTPException(410, why)
    path = BundleStore.of(state.config).path(name)
    if path is None:
        raise HTTPException(404, "no such bundle")
    return FileResponse(path, media_type=OCTETS)
