"""What an admin does to enrollment, shared by the API (``fleet/api/routes/``) and the
command line (:mod:`fleet.enroll.cli`): issue and withdraw tokens, decide enrollments, revoke a
device and publish the CRL. Each action writes its audit entry through an :class:`Auditor`: the
API's records the request's user and address, the command line's the operating-system user
(``cli:<user>``). A device's unit is its accepted enrollment's (what its status messages claim is
ignored, :mod:`fleet.ingest`), so moving a device changes that enrollment. Who may act on which
unit is the caller's business (the API checks the user's scope first; the command line runs on
the fleet's host with access to its database and CA key).

>>> # runtime = open_runtime(config, sessions, clock)
>>> # text, token = create_token(runtime, sessions, system_auditor("cli:root", clock), unit_code="00001",
>>> #                            ttl=dt.timedelta(days=7), max_devices=20, require_approval=False,
>>> #                            created_by="cli:root", max_ttl_h=720, now=clock())
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal, Protocol

from fastapi import Request
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from fleet.auth.audit import entry, record
from fleet.enroll.crl import Published
from fleet.enroll.models import EnrollmentRow
from fleet.enroll.runtime import EnrollRuntime
from fleet.errors import FleetError
from fleet.models import Device
from provisioning.ca import IssuedCertificate
from provisioning.tokens import Enrollment, EnrollmentToken, issue_token

TokenState = Literal["active", "expired", "used", "revoked"]


class TokenTtlTooLong(FleetError, ValueError):
    """The token would outlive ``enrollment.max_token_ttl_h``."""


class NotEnrolled(FleetError, LookupError):
    """The device has no accepted enrollment: the fleet assigns it no unit (its unit, if any,
    comes from its own status messages and its config file)."""


class Auditor(Protocol):
    """Adds one audit entry to ``session`` (written when the caller commits)."""

    def __call__(self, session: Session, *, action: str, target: str | None = None, unit_code: str | None = None,
                 outcome: str = "ok", detail: str | None = None) -> None: ...


def request_auditor(request: Request) -> Auditor:
    """Entries naming the request's user (or device) and client address."""

    def audit(session: Session, *, action: str, target: str | None = None, unit_code: str | None = None,
              outcome: str = "ok", detail: str | None = None) -> None:
        record(session, request, action=action, target=target, unit_code=unit_code, outcome=outcome, detail=detail)

    return audit


def system_auditor(actor: str, clock: Callable[[], dt.datetime]) -> Auditor:
    """Entries naming ``actor`` (``fleet`` for the CRL timer, ``cli:<os user>`` for the command
    line) with actor kind ``system`` and no client address."""

    def audit(session: Session, *, action: str, target: str | None = None, unit_code: str | None = None,
              outcome: str = "ok", detail: str | None = None) -> None:
        session.add(entry(at=clock(), action=action, actor=actor, actor_kind="system", target=target,
                          unit_code=unit_code, outcome=outcome, detail=detail))

    return audit


def token_state(token: EnrollmentToken, now: dt.datetime) -> TokenState:
    if token.revoked_at is not None:
        return "revoked"
    if token.used >= token.max_devices:
        return "used"
    return "expired" if now >= token.expires_at else "active"


def create_token(runtime: EnrollRuntime, sessions: sessionmaker[Session], audit: Auditor, *, unit_code: str,
                 ttl: dt.timedelta, max_devices: int, require_approval: bool, created_by: str, max_ttl_h: float,
                 now: dt.datetime) -> tuple[SecretStr, EnrollmentToken]:
    """Issue a token and store its record (the secret's hash only); the text is returned to be
    shown once. Raises :class:`TokenTtlTooLong`, or ``ValueError`` for a bad unit code or count."""
    if ttl > dt.timedelta(hours=max_ttl_h):
        raise TokenTtlTooLong(f"ttl_hours is at most {max_ttl_h:g}")
    text, token = issue_token(unit_code, ttl=ttl, max_devices=max_devices, require_approval=require_approval,
                              created_by=created_by, now=now, pepper=runtime.pepper)
    runtime.store.add_token(token)
    with sessions.begin() as session:
        audit(session, action="token.created", target=f"token {token.token_id}", unit_code=token.unit_code,
              detail=f"max_devices={token.max_devices} require_approval={token.require_approval} "
                     f"expires_at={token.expires_at.isoformat()}")
    return text, token


def withdraw_token(runtime: EnrollRuntime, sessions: sessionmaker[Session], audit: Auditor, token_id: str,
                   now: dt.datetime) -> EnrollmentToken | None:
    """Revoke a token (devices enrolled with it stay); None when there is no such token."""
    revoked = runtime.store.revoke_token(token_id, now)
    if revoked is not None:
        with sessions.begin() as session:
            audit(session, action="token.revoked", target=f"token {token_id}", unit_code=revoked.unit_code)
    return revoked


def audit_issued(session: Session, audit: Auditor, issued: IssuedCertificate | None, unit: str | None, action: str,
                 detail: str = "") -> None:
    if issued is not None:
        audit(session, action=action, target=issued.name, unit_code=unit,
              detail=f"serial={issued.serial:x} not_after={issued.not_after.isoformat()} {detail}".strip())


def decide(runtime: EnrollRuntime, sessions: sessionmaker[Session], audit: Auditor, device_id: str, *,
           accept: bool, by: str, reason: str | None, now: dt.datetime) -> Enrollment:
    """Accept (the certificate is signed now) or reject a pending enrollment. Raises
    ``InvalidTransition`` when it is not pending."""
    decided = runtime.service.decide(device_id, accept=accept, by=by, reason=reason, now=now)
    with sessions.begin() as session:
        audit(session, action=f"enrollment.{decided.state}", target=device_id, unit_code=decided.unit_code,
              detail=f"token={decided.token_id}" + (f" reason={reason}" if reason else ""))
        if accept:
            audit_issued(session, audit, runtime.store.latest_certificate(device_id), decided.unit_code,
                         "certificate.issued")
    return decided


def device_unit(runtime: EnrollRuntime, sessions: sessionmaker[Session], device_id: str) -> tuple[bool, str | None]:
    """(whether the fleet ever enrolled or certified ``device_id``, its unit)."""
    enrollment = runtime.store.enrollment(device_id)
    with sessions() as session:
        device = session.get(Device, device_id)
        unit = enrollment.unit_code if enrollment else device.unit_code if device else None
    known = enrollment is not None or runtime.store.latest_certificate(device_id) is not None
    return known, unit


def publish_crl(runtime: EnrollRuntime, sessions: sessionmaker[Session], audit: Auditor, why: str) -> Published:
    """Sign and write the CRL, SIGHUP the broker, audit it."""
    published = runtime.crl.publish()
    with sessions.begin() as session:
        audit(session, action="crl.published",
              detail=f"revoked={published.revoked} broker_reloaded={published.broker_reloaded} why={why}")
    return published


def revoke_device(runtime: EnrollRuntime, sessions: sessionmaker[Session], audit: Auditor, device_id: str, *,
                  unit: str | None, by: str, now: dt.datetime) -> tuple[list[str], Published]:
    """Revoke every certificate of a known device (hex serials revoked now; none when it was
    already), mark it revoked, rewrite the CRL and reload the broker."""
    revoked = runtime.store.revoke_device(device_id, now, by=by)
    serials = [f"{r.serial:x}" for r in revoked]
    with sessions.begin() as session:
        audit(session, action="certificate.revoked", target=device_id, unit_code=unit,
              detail=f"serials={','.join(serials) or 'none (already revoked)'}")
    return serials, publish_crl(runtime, sessions, audit, f"revoked {device_id}")


def retire_superseded(runtime: EnrollRuntime, sessions: sessionmaker[Session], audit: Auditor, device_id: str,
                      current_serial: int, *, now: dt.datetime) -> list[str]:
    """The device has proved it holds its newest certificate (a request signed by it): revoke the
    ones that certificate replaced, rewrite the CRL and reload the broker. Hex serials revoked now
    (none when there was nothing left to revoke: then no CRL is written)."""
    revoked = runtime.store.revoke_superseded(device_id, current_serial, now, by=device_id)
    if not revoked:
        return []
    serials = [f"{r.serial:x}" for r in revoked]
    _, unit = device_unit(runtime, sessions, device_id)
    with sessions.begin() as session:
        audit(session, action="certificate.superseded", target=device_id, unit_code=unit,
              detail=f"serials={','.join(serials)} current={current_serial:x}")
    publish_crl(runtime, sessions, audit, f"renewal of {device_id} confirmed")
    return serials


def move_device(session: Session, audit: Auditor, device_id: str, unit_code: str) -> str:
    """Assign an enrolled device to ``unit_code``, in the caller's transaction; returns the unit
    it leaves (the same when nothing changed: then nothing is audited). The assignment is the
    accepted enrollment's unit, which ingest applies over whatever the device's status claims;
    pages it captured keep the unit they came in under. Raises :class:`NotEnrolled`."""
    device = session.get(Device, device_id, with_for_update=True)  # ordered against an ingest batch
    enrollment = session.get(EnrollmentRow, device_id, with_for_update=True)
    if enrollment is None or enrollment.state != "accepted":
        raise NotEnrolled(f"{device_id} has no accepted enrollment: the fleet does not assign its unit")
    old = enrollment.unit_code
    if old == unit_code and (device is None or device.unit_code == unit_code):
        return old
    enrollment.unit_code = unit_code
    if device is not None:
        device.unit_code = unit_code
    audit(session, action="device.moved", target=device_id, unit_code=unit_code, detail=f"from={old} to={unit_code}")
    return old
