"""FastAPI dependencies: the logged-in user, an admin, a province admin.

>>> from fastapi import FastAPI
>>> app = FastAPI()
>>> @app.get("/whoami")
... def whoami(user: CurrentUser) -> str:
...     return user.name
"""

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from fleet.api.state import fleet_state
from fleet.auth.audit import PRINCIPAL_KEY
from fleet.auth.principal import Principal
from fleet.auth.sessions import COOKIE, resolve


def request_token(request: Request) -> str | None:
    """The session token: ``Authorization: Bearer <token>``, else the ``sohoa_session`` cookie."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.cookies.get(COOKIE) or None


def resolve_request(request: Request) -> Principal | None:
    """The request's principal (resolved once, kept in ``request.state``), or None."""
    state: dict[str, Any] = request.scope.setdefault("state", {})
    known = state.get(PRINCIPAL_KEY)
    if isinstance(known, Principal):
        return known
    token = request_token(request)
    if token is None:
        return None
    fleet = fleet_state(request.app)
    with fleet.sessions() as session:
        principal = resolve(session, token, fleet.now())
    if principal is not None:
        state[PRINCIPAL_KEY] = principal
    return principal


def unauthenticated() -> HTTPException:
    return HTTPException(401, "login required", headers={"WWW-Authenticate": "Bearer"})


def current_user(request: Request) -> Principal:
    principal = resolve_request(request)
    if principal is None:
        raise unauthenticated()
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def admin_user(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise HTTPException(403, "an admin role is needed")
    return user


AdminUser = Annotated[Principal, Depends(admin_user)]


def province_admin(user: CurrentUser) -> Principal:
    if not user.is_province_admin:
        raise HTTPException(403, "the province admin role is needed")
    return user


ProvinceAdmin = Annotated[Principal, Depends(province_admin)]
