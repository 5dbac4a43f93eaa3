"""Dossier codes and document names, as the fleet reads them.

A code is compared after :func:`normalize` (spaces trimmed, upper case: the one-stop system's
export and a clerk's typing differ in case). A document is a component ``<code>.<n>[.pdf]``
or a result ``<code>-KQ<n>[.pdf]`` (also written ``-KQ(n)``, Decree 45/2020 art. 14); a page
whose dossier code carries the ``-KQ<n>`` suffix belongs to the result of ``<code>``.

>>> normalize(" 000.00.12.h10-250101-0001 ")
'000.00.12.H10-250101-0001'
>>> document("H10-1.3.pdf"), document("H10-1-KQ2.pdf"), document("H10-1-KQ(1)"), document("odd")
(Named(code='H10-1', kind='component', sequence=3), Named(code='H10-1', kind='result', sequence=2), \
Named(code='H10-1', kind='result', sequence=1), Named(code='ODD', kind='component', sequence=None))
>>> page_code("H10-1-KQ1"), page_code("h10-1")
(Named(code='H10-1', kind='result', sequence=1), Named(code='H10-1', kind='component', sequence=None))
"""

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["component", "result"]

RESULT_PATTERN = r"^(.+)-KQ\(?([0-9]{1,6})\)?$"
"""A result's code: the dossier's code (group 1), then ``-KQ<n>`` or ``-KQ(n)`` (group 2). Written
so that PostgreSQL's regular expressions read it the same (the recount uses it in SQL)."""
_RESULT = re.compile(RESULT_PATTERN)
_COMPONENT = re.compile(r"^(?P<code>.+)\.(?P<n>[0-9]{1,6})$")
WALK_IN_PREFIX = "WALKIN-"


@dataclass(frozen=True)
class Named:
    """What a name says: the dossier, component or result, and the sequence number when given."""

    code: str
    kind: Kind
    sequence: int | None


def normalize(code: str) -> str:
    return code.strip().upper()


def page_code(code: str) -> Named:
    """The dossier a page's code names (a result's pages carry ``<code>-KQ<n>``)."""
    code = normalize(code)
    found = _RESULT.match(code)
    if found:
        return Named(found[1], "result", int(found[2]))
    return Named(code, "component", None)


def document(name: str) -> Named:
    """The dossier, kind and number a document's file name says."""
    stem = normalize(name)
    if stem.endswith(".PDF"):
        stem = stem[: -len(".PDF")]
    found = _RESULT.match(stem)
    if found:
        return Named(found[1], "result", int(found[2]))
    found = _COMPONENT.match(stem)
    if found:
        return Named(found["code"], "component", int(found["n"]))
    return Named(stem, "component", None)


def document_name(code: str, kind: Kind, sequence: int) -> str:
    """The file name of a dossier's document, as the devices write it.

    >>> document_name("H10-1", "component", 3), document_name("H10-1", "result", 1)
    ('H10-1.3.pdf', 'H10-1-KQ1.pdf')
    """
    return f"{code}-KQ{sequence}.pdf" if kind == "result" else f"{code}.{sequence}.pdf"


def is_walk_in(code: str) -> bool:
    return normalize(code).startswith(WALK_IN_PREFIX)
