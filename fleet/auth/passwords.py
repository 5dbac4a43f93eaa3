"""Password hashing (argon2id, argon2-cffi's defaults) and random secrets.

>>> h = hash_password("correct horse battery")
>>> h.startswith("$argon2id$"), verify_password(h, "correct horse battery"), verify_password(h, "wrong")
(True, True, False)
"""

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()

# Verified against when the name is unknown, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; ``None`` (no such user) still spends the time of a check."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A random password for a first admin or a reset (about 120 bits)."""
    return secrets.token_urlsafe(15)
