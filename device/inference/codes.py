"""QR codes and barcodes on pages: the dossier receipt slip's QR ties the pages after it to a
dossier; the CCCD's QR gives the applicant's fields for the dossier's metadata.

The CCCD fields are personal data: they are kept out of ``repr`` and logs, and
:meth:`Code.as_dict` leaves them out unless asked. Anything that cannot be decoded or parsed
becomes a ``Code`` of kind ``unreadable`` with a reason; nothing here raises on bad content.

>>> parse_text("QRCode", "H10.25-0001|1.000123|001099012345|Tờ khai").kind
'dossier_receipt'
>>> parse_text("QRCode", "001099012345|123456789|Nguyễn Văn A|01011990|Nam|Hà Nội|01012021").kind
'cccd'
>>> parse_text("QRCode", "001099012345|garbage").kind
'unreadable'

A slip's QR comes in several shapes (the separator and even the content are not fixed by the
circular), read by the rules of :class:`ReceiptRules`: the fields form, a code alone, or a look-up
URL with the code in its path or query:

>>> parse_text("QRCode", "000.00.12.H10-260101-0001").dossier_code
'000.00.12.H10-260101-0001'
>>> parse_text("QRCode", "https://dichvucong.gov.vn/tra-cuu?maHoSo=000.00.12.H10-260101-0001").dossier_code
'000.00.12.H10-260101-0001'
"""

import datetime as dt
import json
import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from device.inference.config import CodesConfig, ReceiptRules
from device.inference.geometry import shrink, to_gray

log = logging.getLogger(__name__)

Kind = Literal["dossier_receipt", "cccd", "other", "unreadable"]

CCCD_FIELDS_7 = ("id_number", "old_id_number", "full_name", "date_of_birth", "sex", "address", "issue_date")
CCCD_FIELDS_6 = ("id_number", "full_name", "date_of_birth", "sex", "address", "issue_date")
RECEIPT_FIELDS = ("dossier_code", "procedure_code", "applicant_id", "document_name")
_DOSSIER_CODE = re.compile(r"[A-Za-z0-9][\w.\-/]{2,63}")
#: Formats whose finder patterns are distinctive enough that a failed decode is worth reporting
#: (a failed Data Matrix is most often text or print noise taken for one).
_REPORT_FAILED = {"QRCode", "MicroQRCode", "PDF417", "Aztec", "QR Code", "Micro QR Code", "Aztec Code"}

_RECEIPT_KEYS = {
    "dossier_code": ("dossier_code", "dossiercode", "ma_ho_so", "mahoso", "mhs", "hoso", "ma_hs"),
    "procedure_code": ("procedure_code", "procedurecode", "ma_thu_tuc", "mathutuc", "ma_tthc", "tthc", "mtt"),
    "applicant_id": ("applicant_id", "applicantid", "so_giay_to", "cccd", "ma_nguoi_nop", "nguoi_nop", "cmnd"),
    "document_name": ("document_name", "documentname", "ten_giay_to", "tengiayto", "ten", "name"),
}


@dataclass(frozen=True)
class Code:
    """One code found on a page. ``fields`` holds the parsed content (personal for ``cccd``)."""

    kind: Kind
    format: str
    fields: dict[str, str] = field(default_factory=dict, repr=False)
    text: str | None = field(default=None, repr=False)
    error: str | None = None
    position: list[list[int]] | None = None

    @property
    def dossier_code(self) -> str | None:
        """The dossier a receipt slip's code names (None for other codes)."""
        return self.fields.get("dossier_code") if self.kind == "dossier_receipt" else None

    def as_dict(self, personal: bool = False) -> dict[str, Any]:
        """JSON-ready; CCCD fields and the applicant id only when ``personal``."""
        out: dict[str, Any] = {"kind": self.kind, "format": self.format}
        if self.kind == "cccd":
            out["fields"] = dict(self.fields) if personal else {k: "***" for k in self.fields}
        elif self.kind == "dossier_receipt":
            fields = dict(self.fields)
            if not personal and fields.get("applicant_id"):
                fields["applicant_id"] = "***"
            out["fields"] = fields
        elif self.kind == "other":
            out["text"] = self.text
        if self.error:
            out["error"] = self.error
        if self.position is not None:
            out["position"] = self.position
        return out


def _date(value: str) -> bool:
    if not re.fullmatch(r"\d{8}", value):
        return False
    try:
        dt.date(int(value[4:]), int(value[2:4]), int(value[:2]))
    except ValueError:
        return False
    return True


def parse_cccd(text: str) -> dict[str, str] | None:
    """The fields of a CCCD QR (7 fields, or 6 without the old ID number), or None if it is not
    one. Raises ValueError when it looks like one but is damaged."""
    parts = text.strip().split("|")
    if not re.fullmatch(r"\d{12}", parts[0].strip()):
        return None
    names: tuple[str, ...]
    if len(parts) == 7:
        names = CCCD_FIELDS_7
    elif len(parts) == 6:
        names = CCCD_FIELDS_6
    else:
        raise ValueError(f"a citizen ID code has 6 or 7 fields, this one has {len(parts)}")
    fields = dict(zip(names, (p.strip() for p in parts), strict=True))
    if "old_id_number" in fields and fields["old_id_number"] and not re.fullmatch(r"\d{9}", fields["old_id_number"]):
        raise ValueError("the old ID number in the citizen ID code is not 9 digits")
    if not _date(fields["date_of_birth"]) or not _date(fields["issue_date"]):
        raise ValueError("a date in the citizen ID code is not a valid DDMMYYYY date")
    if not fields["full_name"]:
        raise ValueError("the citizen ID code has no name")
    return fields


def _split_receipt(text: str) -> list[str] | dict[str, str] | None:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            return None
        return {str(k).lower(): str(v) for k, v in obj.items()} if isinstance(obj, dict) else None
    for sep in ("|", ";", "\n", "\t", ","):
        parts = [p.strip() for p in stripped.split(sep)]
        if len(parts) >= 2 and all("=" in p or ":" in p for p in parts if p):
            pairs = {}
            for p in parts:
                key, _, value = p.replace(":", "=", 1).partition("=")
                pairs[key.strip().lower()] = value.strip()
            return pairs
        if len(parts) >= 4:
            return parts
    return None


def _fields_form(text: str) -> dict[str, str] | None:
    split = _split_receipt(text)
    if split is None:
        return None
    if isinstance(split, dict):
        fields: dict[str, str] = {}
        for name, keys in _RECEIPT_KEYS.items():
            for key in keys:
                if split.get(key):
                    fields[name] = split[key]
                    break
        return fields if "dossier_code" in fields else None
    # Only a first field shaped like a dossier code makes a list a receipt: other codes
    # (shop receipts, e-invoices) also hold separated fields.
    if not _DOSSIER_CODE.fullmatch(split[0]) or not re.search(r"\d", split[0]):
        return None
    names = RECEIPT_FIELDS[1:]
    rest = [*split[1 : len(names)], " ".join(p for p in split[len(names) :] if p)]
    return {"dossier_code": split[0]} | {n: v for n, v in zip(names, rest, strict=True) if v}


def _url_form(text: str, rules: ReceiptRules) -> dict[str, str] | None:
    url = urllib.parse.urlsplit(text.strip())
    host = (url.hostname or "").lower()
    if url.scheme not in ("http", "https") or not any(host == h or host.endswith("." + h) for h in rules.url_hosts):
        return None
    pattern = re.compile(rules.code_pattern)
    keys = {k.lower() for k in rules.url_query_keys}
    for key, value in urllib.parse.parse_qsl(url.query):
        if key.lower() in keys and pattern.fullmatch(value.strip()):
            return {"dossier_code": value.strip()}
    for segment in reversed(url.path.split("/")):
        if pattern.fullmatch(urllib.parse.unquote(segment)):
            return {"dossier_code": urllib.parse.unquote(segment)}
    return None


def parse_receipt(text: str, rules: ReceiptRules | None = None) -> dict[str, str] | None:
    """The fields a dossier receipt QR (Circular 01/2023/TT-VPCP) holds, by ``rules``: always the
    dossier code, and the procedure code, applicant id and document name when the slip gives
    them. None if it is not a receipt's code. Raises ValueError when it has the shape of one but
    its dossier code is malformed.

    >>> parse_receipt("H10.25-0001|1.000123||Tờ khai")
    {'dossier_code': 'H10.25-0001', 'procedure_code': '1.000123', 'document_name': 'Tờ khai'}
    """
    rules = rules or ReceiptRules()
    fields: dict[str, str] | None = None
    if "url" in rules.forms and "://" in text:
        fields = _url_form(text, rules)
        if fields is None:
            return None
    if fields is None and "code_only" in rules.forms and re.fullmatch(rules.code_pattern, text.strip()):
        fields = {"dossier_code": text.strip()}
    if fields is None and "fields" in rules.forms:
        fields = _fields_form(text)
    if fields is None:
        return None
    if not _DOSSIER_CODE.fullmatch(fields["dossier_code"]):
        raise ValueError("the dossier code in the receipt code is malformed")
    return fields


def parse_text(fmt: str, text: str, rules: ReceiptRules | None = None) -> Code:
    """Classify decoded ``text``: a CCCD, a dossier receipt (by ``rules``), some other code, or
    unreadable."""
    try:
        cccd = parse_cccd(text)
        if cccd is not None:
            return Code("cccd", fmt, cccd)
        receipt = parse_receipt(text, rules)
        if receipt is not None:
            return Code("dossier_receipt", fmt, receipt)
    except ValueError as exc:
        return Code("unreadable", fmt, error=f"unreadable code: {exc}")
    return Code("other", fmt, text=text[:500])


def _formats() -> Any:
    import zxingcpp

    f = zxingcpp.BarcodeFormat
    return (
        f.QRCode, f.MicroQRCode, f.DataMatrix, f.PDF417, f.Aztec,
        f.Code128, f.Code39, f.Code93, f.EAN13, f.EAN8, f.UPCA, f.ITF,
    )  # fmt: skip


def read_codes(image: NDArray[np.uint8], config: CodesConfig | None = None) -> list[Code]:
    """Every code on ``image`` (BGR or grey), positions in ``image``'s pixels. Damaged codes
    come back as ``unreadable``; never raises for the image's content."""
    import zxingcpp  # native library: loaded on first use

    config = config or CodesConfig()
    gray = to_gray(image)
    small, factor = shrink(gray, 100000, config.short_side)
    try:
        found = zxingcpp.read_barcodes(
            np.ascontiguousarray(small),
            formats=_formats(),
            try_downscale=False,
            try_invert=False,
            return_errors=True,
        )
    except (ValueError, RuntimeError) as exc:
        log.warning("barcode reader failed: %s", type(exc).__name__)
        return [Code("unreadable", "unknown", error="unreadable code: the reader failed")]
    codes: list[Code] = []
    seen: set[tuple[object, ...]] = set()
    for b in found:
        fmt = str(b.format).rsplit(".", 1)[-1]
        p = b.position
        corners = [p.top_left, p.top_right, p.bottom_right, p.bottom_left]
        position = [[round(c.x / factor), round(c.y / factor)] for c in corners]
        if not b.valid or b.error:
            side = max(abs(p.bottom_right.x - p.top_left.x), abs(p.bottom_right.y - p.top_left.y))
            if fmt not in _REPORT_FAILED or side < 21:
                continue
            kind = str(getattr(b.error, "type", "damaged")).rsplit(".", 1)[-1].lower()
            reason = f"unreadable code: damaged or partly hidden ({kind})"
            code = Code("unreadable", fmt, error=reason, position=position)
        else:
            parsed = parse_text(fmt, b.text, config.receipt)
            code = Code(parsed.kind, parsed.format, parsed.fields, parsed.text, parsed.error, position)
        # The reader can report one symbol twice (two binarizations): keep it once.
        centre = (round(sum(c[0] for c in position) / 80), round(sum(c[1] for c in position) / 80))
        key = (code.kind, code.format, code.text, code.error, centre)
        if key not in seen:
            seen.add(key)
            codes.append(code)
    log.debug("found %s code(s): %s", len(codes), [c.kind for c in codes])
    return codes
