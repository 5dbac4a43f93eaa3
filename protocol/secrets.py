"""Operator ids and secrets, as the fleet makes and stores them and the devices check them: a PIN
or a staff card's token is kept only as a salted scrypt hash, ``scrypt$N$r$p$<salt>$<hash>``
(base64), and this form is what travels from the fleet to the devices. An operator's id is
``op-`` and 10 lowercase hex digits, the id the admin page shows and the clerk types at the
counter. Both sides import these functions.

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
import secrets

_N, _R, _P = 2**14, 8, 1  # about 16 MB and tens of milliseconds per check: slow for a guesser
PREFIX = "scrypt$"
CARD_TOKEN = re.compile(r"^[0-9a-f]{32}$")
"""What a staff card's QR holds: the token the fleet drew (128 random bits, lowercase hex) and
nothing else, so a device tells a staff card from any other QR before it counts a try."""


OPERATOR_ID = re.compile(r"^op-[0-9a-f]{10}$")
"""An operator's id as the fleet makes it (:func:`new_operator_id`): opaque, never a name."""


def new_operator_id() -> str:
    """A fresh operator id (40 random bits: ids are not secrets, only distinct within a fleet)."""
    return f"op-{secrets.token_hex(5)}"


def operator_id_as_typed(text: str) -> str:
    """What a clerk typed for their operator id, in the fleet's form when it can be: spaces gone,
    lowercase, ``op-`` added to 10 bare hex digits (an on-screen keyboard's capitals, a card read
    aloud without its prefix). Anything else is returned stripped, to be refused as unknown.

    >>> operator_id_as_typed(" OP-3FA2C1D9E0 "), operator_id_as_typed("3fa2 c1d9 e0")
    ('op-3fa2c1d9e0', 'op-3fa2c1d9e0')
    >>> operator_id_as_typed("op_3fa2c1d9e0"), operator_id_as_typed("Op 3fa2c1d9e0")
    ('op-3fa2c1d9e0', 'op-3fa2c1d9e0')
    >>> operator_id_as_typed("nguyen")
    'nguyen'
    """
    squeezed = re.sub(r"\s+", "", text).lower()
    bare = re.fullmatch(r"(?:op[-_.]?)?([0-9a-f]{10})", squeezed)
    return f"op-{bare.group(1)}" if bare else text.strip()


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
