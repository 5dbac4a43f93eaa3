""":class:`provisioning.enrollment.EnrollmentStore` over the fleet's database.

Every method is one transaction. ``consume_token`` is the conditional UPDATE that makes a token
good for exactly ``max_devices`` devices however many kiosks race on it; ``revoked_serials``
answers ``serial in ...`` with one indexed lookup, so checking a device request does not read
every revocation.

>>> from fleet.db import make_engine, migrate, session_factory
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> store = SqlEnrollmentStore(session_factory(engine))
>>> store.token("0123456789abcdef") is None, 12345 in store.revoked_serials()
(True, False)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from fleet.db import insert_ignore
from fleet.enroll.models import CertificateRow, EnrollmentRow, EnrollmentTokenRow
from fleet.models import Device
from provisioning.ca import CertificateKind, IssuedCertificate, RevokedCertificate
from provisioning.errors import CertificateRejected
from provisioning.tokens import Enrollment, EnrollmentState, EnrollmentToken


def _token(row: EnrollmentTokenRow) -> EnrollmentToken:
    return EnrollmentToken(
        token_id=row.token_id, secret_hash=row.secret_hash, unit_code=row.unit_code, created_at=row.created_at,
        expires_at=row.expires_at, max_devices=row.max_devices, used=row.used, require_approval=row.require_approval,
        revoked_at=row.revoked_at, created_by=row.created_by)


def _enrollment(row: EnrollmentRow) -> Enrollment:
    state: EnrollmentState = "accepted" if row.state == "accepted" else "rejected" if row.state == "rejected" \
        else "pending"
    return Enrollment(
        device_id=row.device_id, unit_code=row.unit_code, token_id=row.token_id,
        public_key_sha256=row.public_key_sha256, state=state, requested_at=row.requested_at,
        decided_at=row.decided_at, decided_by=row.decided_by, reason=row.reason)


def _issued(row: CertificateRow) -> IssuedCertificate:
    kind: CertificateKind = "device" if row.kind == "device" else "service" if row.kind == "service" else "server"
    return IssuedCertificate(
        name=row.name, kind=kind, serial=int(row.serial), not_before=row.not_before, not_after=row.not_after,
        fingerprint_sha256=row.fingerprint_sha256, public_key_sha256=row.public_key_sha256, pem=row.pem.encode())


class _RevokedLookup:
    """``serial in revoked`` as one primary-key lookup (what verify_client and renew_device ask)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def __contains__(self, serial: object) -> bool:
        if not isinstance(serial, int):
            return False
        with self._sessions() as session:
            row = session.get(CertificateRow, str(serial))
            return row is not None and row.revoked_at is not None


class SqlEnrollmentStore:
    """The enrollment state in the fleet database (SQLite or PostgreSQL).

    ``clock`` is the fleet's (tests move it); it decides which revoked certificates have
    expired and can leave the CRL.
    """

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime] | None = None) -> None:
        self.sessions = sessions
        self.clock = clock or (lambda: datetime.now(UTC))

    # --- tokens --------------------------------------------------------------------------

    def add_token(self, token: EnrollmentToken) -> None:
        with self.sessions.begin() as session:
            session.add(EnrollmentTokenRow(**token.model_dump()))

    def token(self, token_id: str) -> EnrollmentToken | None:
        with self.sessions() as session:
            row = session.get(EnrollmentTokenRow, token_id)
            return _token(row) if row is not None else None

    def tokens(self, units: frozenset[str] | None = None, *, limit: int = 500) -> list[EnrollmentToken]:
        """Newest first; only those of ``units`` unless None (everything)."""
        query = select(EnrollmentTokenRow).order_by(EnrollmentTokenRow.created_at.desc()).limit(limit)
        if units is not None:
            query = query.where(EnrollmentTokenRow.unit_code.in_(sorted(units)))
        with self.sessions() as session:
            return [_token(r) for r in session.scalars(query)]

    def revoke_token(self, token_id: str, when: datetime) -> EnrollmentToken | None:
        """Withdraw a token (kept for the record); None when there is no such token."""
        with self.sessions.begin() as session:
            row = session.get(EnrollmentTokenRow, token_id, with_for_update=True)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = when
            return _token(row)

    def consume_token(self, token_id: str) -> bool:
        with self.sessions.begin() as session:
            result = session.execute(
                update(EnrollmentTokenRow)
                .where(EnrollmentTokenRow.token_id == token_id,
                       EnrollmentTokenRow.used < EnrollmentTokenRow.max_devices,
                       EnrollmentTokenRow.revoked_at.is_(None))
                .values(used=EnrollmentTokenRow.used + 1)
                .execution_options(synchronize_session=False))
            return bool(getattr(result, "rowcount", 0) == 1)

    # --- enrollments ---------------------------------------------------------------------

    def enrollment(self, device_id: str) -> Enrollment | None:
        with self.sessions() as session:
            row = session.get(EnrollmentRow, device_id)
            return _enrollment(row) if row is not None else None

    def enrollments(self, *, state: str | None = None, units: frozenset[str] | None = None,
                    limit: int = 500) -> list[Enrollment]:
        query = select(EnrollmentRow).order_by(EnrollmentRow.requested_at.desc()).limit(limit)
        if state is not None:
            query = query.where(EnrollmentRow.state == state)
        if units is not None:
            query = query.where(EnrollmentRow.unit_code.in_(sorted(units)))
        with self.sessions() as session:
            return [_enrollment(r) for r in session.scalars(query)]

    def save_enrollment(self, enrollment: Enrollment, csr_pem: str) -> None:
        with self.sessions.begin() as session:
            session.merge(EnrollmentRow(**enrollment.model_dump(), csr_pem=csr_pem))

    def enrollment_csr(self, device_id: str) -> str | None:
        with self.sessions() as session:
            row = session.get(EnrollmentRow, device_id)
            return row.csr_pem if row is not None else None

    # --- certificates --------------------------------------------------------------------

    def add_certificate(self, issued: IssuedCertificate) -> None:
        """Keep an issued certificate; a device's is refused (``revoked``) when the device was
        revoked meanwhile. Both this and :meth:`revoke_device` start with :func:`_lock_device`, so
        a renewal racing a revocation either lands before it (and is revoked with the others) or
        sees it (and is refused): it never slips past the CRL."""
        with self.sessions.begin() as session:
            if issued.kind == "device":
                _lock_device(session, issued.name)
                revoked = session.scalar(select(Device.revoked_at).where(Device.id == issued.name))
                if revoked is not None:
                    raise CertificateRejected("revoked", "the device was revoked while its certificate was issued")
            session.add(CertificateRow(
                serial=str(issued.serial), name=issued.name, kind=issued.kind, not_before=issued.not_before,
                not_after=issued.not_after, fingerprint_sha256=issued.fingerprint_sha256,
                public_key_sha256=issued.public_key_sha256, pem=issued.pem.decode(), issued_at=self.clock()))

    def latest_certificate(self, device_id: str) -> IssuedCertificate | None:
        recent = self.recent_certificates(device_id, limit=1)
        return recent[0] if recent else None

    def recent_certificates(self, device_id: str, *, limit: int = 3) -> list[IssuedCertificate]:
        """The device's newest certificates, newest first (revoked or not: the verifier decides).

        More than the newest, because a renewal can be issued here and lost on the way back (the
        device crashed or the link dropped before it stored it): the device still signs with the
        previous key, which must keep working until it expires or is revoked."""
        query = (select(CertificateRow).where(CertificateRow.name == device_id)
                 .order_by(CertificateRow.issued_at.desc(), CertificateRow.not_after.desc()).limit(limit))
        with self.sessions() as session:
            return [_issued(row) for row in session.scalars(query)]

    def revoke_device(self, device_id: str, when: dt.datetime, *, by: str | None = None) -> list[RevokedCertificate]:
        """Revoke every unrevoked certificate of the device and mark the device revoked (its row is
        created, with the unit of its enrollment, when it never spoke): one transaction."""
        with self.sessions.begin() as session:
            # The lock first (it orders us against add_certificate), then the certificates: one
            # stored before we got the lock is in the list below.
            _lock_device(session, device_id)
            enrolled = session.get(EnrollmentRow, device_id)
            session.execute(insert_ignore(session.get_bind().dialect.name, Device.__table__), [{
                "id": device_id, "unit_code": enrolled.unit_code if enrolled else None, "first_seen": when,
                "last_seen": when, "status": "unknown"}])
            session.execute(update(Device).where(Device.id == device_id, Device.revoked_at.is_(None))
                            .values(revoked_at=when).execution_options(synchronize_session=False))
            rows = list(session.scalars(select(CertificateRow).where(
                CertificateRow.name == device_id, CertificateRow.revoked_at.is_(None)).with_for_update()))
            for row in rows:
                row.revoked_at, row.revoked_by = when, by
            return [RevokedCertificate(int(r.serial), when) for r in rows]

    def revoke_superseded(self, device_id: str, current_serial: int, when: dt.datetime, *,
                          by: str | None = None) -> list[RevokedCertificate]:
        """Revoke the device's unrevoked certificates issued before ``current_serial`` (the one it
        has just proved it holds): a renewal the device confirmed ends the certificates it replaced.
        The device itself stays enrolled. Nothing when ``current_serial`` is not the device's."""
        with self.sessions.begin() as session:
            _lock_device(session, device_id)
            current = session.get(CertificateRow, str(current_serial))
            if current is None or current.name != device_id or current.revoked_at is not None:
                return []
            rows = list(session.scalars(select(CertificateRow).where(
                CertificateRow.name == device_id, CertificateRow.revoked_at.is_(None),
                CertificateRow.serial != current.serial, CertificateRow.issued_at <= current.issued_at)
                .with_for_update()))
            for row in rows:
                row.revoked_at, row.revoked_by = when, by
            return [RevokedCertificate(int(r.serial), when) for r in rows]

    def revoked(self) -> Sequence[RevokedCertificate]:
        query = (select(CertificateRow.serial, CertificateRow.revoked_at)
                 .where(CertificateRow.revoked_at.is_not(None), CertificateRow.not_after > self.clock())
                 .order_by(CertificateRow.revoked_at))
        with self.sessions() as session:
            return [RevokedCertificate(int(serial), when) for serial, when in session.execute(query) if when]

    def revoked_serials(self) -> _RevokedLookup:
        return _RevokedLookup(self.sessions)



def _lock_device(session: Session, device_id: str) -> None:
    """Serialize certificate writes of one device: a no-op UPDATE of its enrollment row, the
    first statement of the transaction, takes that row's lock on PostgreSQL and the database's
    write lock on SQLite (whose reads before a first write run outside any transaction)."""
    session.execute(update(EnrollmentRow).where(EnrollmentRow.device_id == device_id)
                    .values(decided_by=EnrollmentRow.decided_by).execution_options(synchronize_session=False))
