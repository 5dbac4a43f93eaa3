"""Enrollment tokens and the approval of each enrollment, as pure logic the fleet persists.

A token is what an admin hands to the technician installing a kiosk: one-time (or good for
``max_devices`` kiosks), bound to one administrative unit, with an expiry. Its text is
``et1.<token id>.<secret>``: the id finds the row, the secret proves possession. Only a hash of
the secret is stored (HMAC-SHA-256 with the fleet's pepper when it has one: the secret has 256
bits of entropy, so a slow password hash would add nothing), compared in constant time.

>>> import datetime as dt
>>> now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
>>> text, token = issue_token("00001", ttl=dt.timedelta(days=2), now=now)
>>> token.check(text, unit_code="00001", now=now)
>>> token = token.consumed(now)
>>> token.check(text, unit_code="00001", now=now)
Traceback (most recent call last):
...
provisioning.errors.TokenRejected: used: the token has already been used

The fleet must make consumption atomic (``UPDATE ... SET used = used + 1 WHERE id = :id AND
used < max_devices`` and check the row count) so two kiosks racing on one token cannot both win.

The approval model: :class:`Enrollment` goes ``pending -> accepted | rejected`` (or straight to
``accepted`` when the token does not require approval); decided enrollments never change again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from protocol.topics import is_valid_device_id
from provisioning.errors import InvalidTransition, TokenRejected

PREFIX = "et1"
_TOKEN = re.compile(r"^et1\.(?P<id>[0-9a-f]{16})\.(?P<secret>[A-Za-z0-9_-]{43})$")
UNIT_CODE_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.-]{0,31}$"
_UNIT = re.compile(UNIT_CODE_PATTERN)

TokenRejectReason = Literal["malformed", "unknown", "invalid", "revoked", "expired", "used", "wrong_unit"]


def _plain(presented: str | SecretStr) -> str:
    return presented.get_secret_value() if isinstance(presented, SecretStr) else presented


def parse_token(presented: str | SecretStr) -> tuple[str, str]:
    """(token id, secret) of a token text; :class:`TokenRejected` ``malformed`` otherwise.
    The fleet looks the row up by the id, then calls :meth:`EnrollmentToken.check`."""
    m = _TOKEN.match(_plain(presented).strip())
    if m is None:
        raise TokenRejected("malformed", "not an enrollment token")
    return m["id"], m["secret"]


def hash_secret(secret: str, pepper: bytes | None = None) -> str:
    """Hex digest stored in place of the secret (HMAC-SHA-256 keyed with ``pepper`` if given)."""
    if pepper:
        return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(b"sohoa-enrollment-token\x00" + secret.encode()).hexdigest()


def _utc(moment: dt.datetime | None) -> dt.datetime:
    return moment if moment is not None else dt.datetime.now(dt.UTC)


class EnrollmentToken(BaseModel):
    """What the fleet stores about a token: never the secret itself.

    >>> import datetime as dt
    >>> text, tok = issue_token("79", ttl=dt.timedelta(hours=8), max_devices=3, require_approval=True)
    >>> tok.unit_code, tok.max_devices, text.get_secret_value() in tok.model_dump_json() + repr(tok)
    ('79', 3, False)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="Public half of the token; the row's key.")
    secret_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hash of the secret half (hash_secret).")
    unit_code: str = Field(pattern=UNIT_CODE_PATTERN, description="The administrative unit devices join.")
    created_at: dt.datetime = Field(description="When the admin created it (UTC).")
    expires_at: dt.datetime = Field(description="After this instant the token is refused (UTC).")
    max_devices: int = Field(1, ge=1, le=10_000, description="How many devices may enroll with it.")
    used: int = Field(0, ge=0, description="How many devices have enrolled with it.")
    require_approval: bool = Field(False, description="Each enrollment waits for an admin's accept/reject.")
    revoked_at: dt.datetime | None = Field(None, description="Set when an admin withdraws the token.")
    created_by: str | None = Field(None, description="The admin who created it (for the audit log).")

    def __repr__(self) -> str:
        return (f"EnrollmentToken(token_id={self.token_id!r}, unit_code={self.unit_code!r}, "
                f"used={self.used}/{self.max_devices}, expires_at={self.expires_at.isoformat()!r})")

    def check(self, presented: str | SecretStr, *, unit_code: str, now: dt.datetime | None = None,
              pepper: bytes | None = None) -> None:
        """Accept ``presented`` for a device installed in ``unit_code``, or raise :class:`TokenRejected`.

        The secret is checked first (constant time), so the token's state (expired, used...) is
        only revealed to someone holding it.
        """
        self.verify_secret(presented, pepper=pepper)
        moment = _utc(now)
        if self.revoked_at is not None and self.revoked_at <= moment:
            raise TokenRejected("revoked", "the token was withdrawn")
        if moment >= self.expires_at:
            raise TokenRejected("expired", "the token has expired")
        if self.used >= self.max_devices:
            raise TokenRejected("used", "the token has already been used")
        if unit_code != self.unit_code:
            raise TokenRejected("wrong_unit", "the token is for another unit")

    def verify_secret(self, presented: str | SecretStr, *, pepper: bytes | None = None) -> None:
        """Only prove possession (constant time), without the state checks: what a device re-polling
        its pending enrollment with the same token needs (the token is used by then)."""
        token_id, secret = parse_token(presented)
        if not hmac.compare_digest(token_id, self.token_id):
            raise TokenRejected("unknown", "no such token")
        if not hmac.compare_digest(hash_secret(secret, pepper), self.secret_hash):
            raise TokenRejected("invalid", "the token's secret is wrong")

    def consumed(self, now: dt.datetime | None = None) -> EnrollmentToken:
        """A copy counting one more device (persist it atomically, see the module doc)."""
        if self.used >= self.max_devices:
            raise TokenRejected("used", "the token has already been used")
        return self.model_copy(update={"used": self.used + 1})

    def revoked(self, now: dt.datetime | None = None) -> EnrollmentToken:
        return self.model_copy(update={"revoked_at": _utc(now)})


def issue_token(unit_code: str, *, ttl: dt.timedelta | None = None, expires_at: dt.datetime | None = None,
                max_devices: int = 1, require_approval: bool = False, created_by: str | None = None,
                now: dt.datetime | None = None, pepper: bytes | None = None) -> tuple[SecretStr, EnrollmentToken]:
    """A new token: the text to show the admin ONCE (a :class:`SecretStr`, so it does not leak
    through ``repr`` or logs) and the record to store."""
    if not _UNIT.match(unit_code):
        raise ValueError("unit codes are 1-32 letters, digits, dots and dashes")
    moment = _utc(now)
    if (ttl is None) == (expires_at is None):
        raise ValueError("give exactly one of ttl and expires_at")
    end = expires_at if expires_at is not None else moment + (ttl or dt.timedelta(0))
    if end <= moment:
        raise ValueError("the expiry must be in the future")
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = EnrollmentToken(token_id=token_id, secret_hash=hash_secret(secret, pepper), unit_code=unit_code,
                             created_at=moment, expires_at=end, max_devices=max_devices,
                             require_approval=require_approval, created_by=created_by)
    return SecretStr(f"{PREFIX}.{token_id}.{secret}"), record


# --- approval ----------------------------------------------------------------------------------

EnrollmentState = Literal["pending", "accepted", "rejected"]


class Enrollment(BaseModel):
    """One device's enrollment request and the decision on it (Mender's pending/accepted/rejected).

    >>> import datetime as dt
    >>> _, tok = issue_token("00001", ttl=dt.timedelta(days=1), require_approval=True)
    >>> e = Enrollment.start(tok, device_id="kiosk-0001", public_key_sha256="ab" * 32)
    >>> e.state
    'pending'
    >>> e.accept(by="admin@province").state
    'accepted'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: str = Field(description="The id the device enrolls under (its certificate CN).")
    unit_code: str = Field(pattern=UNIT_CODE_PATTERN, description="The unit, taken from the token.")
    token_id: str = Field(description="Which token was presented (not the secret).")
    public_key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="The CSR's key: identifies re-polls.")
    state: EnrollmentState = Field("pending", description="pending until decided; decisions are final.")
    requested_at: dt.datetime = Field(description="First submission (UTC).")
    decided_at: dt.datetime | None = Field(None, description="When accepted or rejected.")
    decided_by: str | None = Field(None, description="Admin who decided, or 'token' for automatic acceptance.")
    reason: str | None = Field(None, max_length=500, description="Why it was rejected (shown to admins).")

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        if not is_valid_device_id(value):
            raise ValueError("device ids are 3-64 lower-case letters, digits and dashes")
        return value

    @classmethod
    def start(cls, token: EnrollmentToken, *, device_id: str, public_key_sha256: str,
              now: dt.datetime | None = None) -> Enrollment:
        """A new enrollment after ``token.check`` passed: pending if the token requires approval,
        else accepted at once."""
        moment = _utc(now)
        auto = not token.require_approval
        return cls(device_id=device_id, unit_code=token.unit_code, token_id=token.token_id,
                   public_key_sha256=public_key_sha256, state="accepted" if auto else "pending",
                   requested_at=moment, decided_at=moment if auto else None, decided_by="token" if auto else None)

    def _decide(self, state: EnrollmentState, by: str, now: dt.datetime | None, reason: str | None) -> Enrollment:
        if self.state != "pending":
            raise InvalidTransition("already_decided", f"enrollment is already {self.state}")
        return self.model_copy(update={"state": state, "decided_by": by, "decided_at": _utc(now), "reason": reason})

    def accept(self, *, by: str, now: dt.datetime | None = None) -> Enrollment:
        return self._decide("accepted", by, now, None)

    def reject(self, *, by: str, reason: str | None = None, now: dt.datetime | None = None) -> Enrollment:
        return self._decide("rejected", by, now, reason)

    def is_same_request(self, device_id: str, public_key_sha256: str) -> bool:
        """A device polling again (same id, same key) rather than another one claiming its id."""
        return hmac.compare_digest(self.device_id, device_id) and hmac.compare_digest(
            self.public_key_sha256, public_key_sha256)
