"""Tables of enrollment: tokens, enrollments, the certificates the CA issued. Created by the
Alembic revision ``0006_enroll`` (which also adds ``devices.revoked_at``).

Certificate serials are random 159-bit integers: more than any SQL integer type holds (and SQLite
turns a large NUMERIC into a float), so they are stored as decimal strings.
"""

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fleet.models import Base, UTCDateTime

SERIAL_DIGITS = 49
"""Decimal digits of the largest serial (2**159 has 48)."""


class EnrollmentTokenRow(Base):
    """:class:`provisioning.tokens.EnrollmentToken`: never the secret, only its hash."""

    __tablename__ = "enrollment_tokens"

    token_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    unit_code: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    max_devices: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer, default=0)
    require_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(128))


class EnrollmentRow(Base):
    """:class:`provisioning.tokens.Enrollment` and the CSR to sign once it is accepted."""

    __tablename__ = "enrollments"
    __table_args__ = (Index("ix_enrollments_state_unit", "state", "unit_code"),)

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    unit_code: Mapped[str] = mapped_column(String(64))
    token_id: Mapped[str] = mapped_column(String(16))
    public_key_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # pending | accepted | rejected
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(String(500))
    csr_pem: Mapped[str] = mapped_column(Text)


class CertificateRow(Base):
    """:class:`provisioning.ca.IssuedCertificate` (device certificates) and its revocation."""

    __tablename__ = "certificates"
    __table_args__ = (Index("ix_certificates_name_issued", "name", "issued_at"),)

    serial: Mapped[str] = mapped_column(String(SERIAL_DIGITS), primary_key=True)  # decimal
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64))
    public_key_sha256: Mapped[str] = mapped_column(String(64))
    pem: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(128))


class RequestNonce(Base):
    """A signed device request's nonce, kept while its time is within the allowed skew: a replay
    is refused by whichever fleet node it reaches (the primary key makes the second insert fail)."""

    __tablename__ = "request_nonces"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[int] = mapped_column(Integer, index=True)
