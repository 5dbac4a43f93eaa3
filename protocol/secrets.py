"""Operator secrets, as the fleet stores them and the devices check them: a PIN or a staff
card's token is kept only as a salted scrypt hash, ``scrypt$N$r$p$<salt>$<hash>`` (base64), and
this form is what travels from the fleet to the devices. Both sides import these two functions.

>>> stored = hash_secret("2468")
>>> check_secret("2468", stored), check_secret("1357", stored)
(True, False)
>>> stored.startswith("scrypt$16384$8$1$")
True
"""

import base64
import hashlib
import hmac
import os
import re

_N, _R, _P = 2**14, 8, 1  # about 16 MB and tens of milliseconds per check: slow for a guesser
PREFIX = "scrypt$"
CARD_TOKEN = re.compile(r"^[0-9a-f]{32}$")
"""What a staff card's QR holds: the token the fleet drew (128 random bits, lowercase hex) and
nothing else, so a device tells a staff card from any other QR before it counts a try."""


def is_card_token(text: str) -> bool:
    """Whether a QR's text has the form of a staff card's token.

    >>> is_card_token("0f" * 16), is_card_token("000.00.12.H10-260101-0001")
    (True, False)
    """
    return CARD_TOKEN.fullmatch(text.strip()) is not None


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$<salt>$<hash>`` (base64): what the book stores for a PIN or a card token."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` is the one ``stored`` was made from (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        wanted = base64.b64decode(digest)
        got = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(wanted), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, wanted)
