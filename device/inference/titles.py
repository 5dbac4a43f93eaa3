"""Read a page's printed title and say which document type it names.

Vietnamese administrative papers print their type in capitals near the top ("GIẤY KHAI SINH",
"CĂN CƯỚC CÔNG DÂN", "QUYẾT ĐỊNH", "TỜ KHAI" ...). Tesseract reads a small crop of the upright
page (the top of a page, a whole card, the head of a till receipt) and the text is matched
against the titles of each class, tolerating what OCR gets wrong: accents are stripped, case and
punctuation ignored, and a title matches with a few wrong letters as long as it starts and ends
on word boundaries. The first line that names a type wins: a decision "QUYẾT ĐỊNH về việc cấp
giấy chứng nhận quyền sử dụng đất" is a decision, not a land certificate.

Tesseract runs as a child process (``OMP_THREAD_LIMIT=1``), so reading overlaps with the page
pipeline's own work on the other core; :meth:`TitleReader.start` returns at once.

>>> match_titles("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\\nGIXY KHAI SINH").doctype
'birth_certificate'
>>> match_titles("Hello world").doctype is None
True
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np
from numpy.typing import NDArray

from device.inference.config import TitleConfig

_log = logging.getLogger(__name__)

#: Each class's titles and key phrases (accents stripped, capitals) with how strongly each one
#: names the class on its own. Titles score 1.0; phrases that usually but not always go with the
#: class score less. Phrases shorter than six letters must be read exactly.
TITLES: dict[str, tuple[tuple[str, float], ...]] = {
    "id_card": (
        ("CAN CUOC CONG DAN", 1.0), ("CAN CUOC", 0.95), ("CITIZEN IDENTITY CARD", 1.0), ("IDENTITY CARD", 0.95),
        ("CHUNG MINH NHAN DAN", 1.0), ("HO CHIEU", 0.95), ("PASSPORT", 0.95), ("GIAY PHEP LAI XE", 1.0),
        ("DRIVER S LICENSE", 0.95), ("DRIVING LICENCE", 0.95), ("DAC DIEM NHAN DANG", 0.95), ("IDVNM", 0.95),
        ("NOI THUONG TRU", 0.6), ("CO GIA TRI DEN", 0.7), ("QUE QUAN", 0.5),
    ),
    "birth_certificate": (
        ("GIAY KHAI SINH", 1.0), ("TRICH LUC KHAI SINH", 1.0), ("BAN SAO GIAY KHAI SINH", 1.0),
        ("NGUOI KY GIAY KHAI SINH", 0.9),
    ),
    "marriage_certificate": (
        ("GIAY CHUNG NHAN KET HON", 1.0), ("CHUNG NHAN KET HON", 0.95), ("TRICH LUC KET HON", 1.0),
    ),
    "land_certificate": (
        ("GIAY CHUNG NHAN QUYEN SU DUNG DAT", 1.0), ("QUYEN SU DUNG DAT", 0.9), ("QUYEN SO HUU NHA O", 0.9),
        ("TAI SAN KHAC GAN LIEN VOI DAT", 0.95), ("THUA DAT", 0.6),
    ),
    "household_book": (
        ("SO HO KHAU", 1.0), ("SO TAM TRU", 1.0), ("CHU HO", 0.6), ("QUAN HE VOI CHU HO", 0.9),
    ),
    "application_form": (
        ("TO KHAI", 1.0), ("DON DE NGHI", 1.0), ("DON XIN", 1.0), ("DON DANG KY", 1.0), ("PHIEU DE NGHI", 1.0),
        ("PHIEU YEU CAU", 1.0), ("BAN KHAI", 0.9), ("NGUOI YEU CAU", 0.7), ("NGUOI KHAI", 0.7),
        ("NGUOI LAM DON", 0.8), ("APPLICATION FORM", 0.9),
    ),
    "official_document": (
        ("QUYET DINH", 1.0), ("CONG VAN", 1.0), ("V V", 0.9), ("THONG BAO", 0.95), ("BAO CAO", 0.9),
        ("KE HOACH", 0.9), ("TO TRINH", 0.95), ("NGHI DINH", 1.0), ("THONG TU", 1.0), ("CHI THI", 0.95),
        ("NGHI QUYET", 1.0), ("GIAY MOI", 0.95), ("NOI NHAN", 0.8), ("QD UBND", 0.9), ("UBND VP", 0.8),
    ),
    "receipt": (
        ("HOA DON", 1.0), ("BIEN LAI", 1.0), ("PHIEU THU", 1.0), ("TONG CONG", 0.9), ("TONG TIEN", 0.9),
        ("THANH TIEN", 0.8), ("TIEN MAT", 0.8), ("THANH TOAN", 0.6), ("VND", 0.6), ("EUR", 0.5), ("USD", 0.5),
        ("TOTAL", 0.8), ("SUBTOTAL", 0.9), ("SUMME", 0.8), ("MWST", 0.8), ("RECEIPT", 0.9), ("INVOICE", 0.9),
        ("CHANGE", 0.5),
    ),
    "dossier_receipt": (
        ("GIAY TIEP NHAN HO SO VA HEN TRA KET QUA", 1.0), ("TIEP NHAN HO SO", 0.95), ("HEN TRA KET QUA", 1.0),
        ("MA HO SO", 0.8),
    ),
}

#: Phrases printed in any case (labels, currencies, the subject line "V/v"); every other phrase
#: is a title, printed in capitals, and counts only as a clue when read in lower case.
ANY_CASE = frozenset((
    "V V", "NOI NHAN", "NGUOI YEU CAU", "NGUOI KHAI", "NGUOI LAM DON", "QUE QUAN", "NOI THUONG TRU",
    "CO GIA TRI DEN", "CHU HO", "QUAN HE VOI CHU HO", "MA HO SO", "THUA DAT", "THANH TIEN", "TIEN MAT",
    "THANH TOAN", "TONG CONG", "TONG TIEN", "TOTAL", "SUBTOTAL", "SUMME", "MWST", "VND", "EUR", "USD",
    "CHANGE", "QD UBND", "UBND VP", "DAC DIEM NHAN DANG", "IDVNM", "RECEIPT", "INVOICE",
))

#: The national motto heads every administrative paper: Vietnamese and official, whatever else.
MOTTO = ("CONG HOA XA HOI CHU NGHIA VIET NAM", "DOC LAP TU DO HANH PHUC")

#: A price as receipts print it: 25.000 / 1,250,000 / 12,99 / 3.50 (optionally with a currency).
_PRICE = re.compile(r"(?<![\d.,])(?:\d{1,3}(?:[.,]\d{3})+|\d+[.,]\d{2})(?![\d.,]*\d)")

#: The filler of a machine-readable zone (ICAO 9303) as OCR reads it: two runs of it are the back
#: of an identity card or a passport's data page, whatever the zone's letters were read as.
_MRZ_FILL = re.compile(r"<{3,}")
MRZ_STRENGTH = 0.9

_VIET_LETTERS = set("ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ")


def normalise(text: str) -> str:
    """Capitals without accents, every run of anything but letters and digits one space, lines
    kept: what OCR's variants of one title have in common.

    >>> normalise("Giấy  khai sinh, (bản sao)\\nSố: 12/QĐ-UBND")
    'GIAY KHAI SINH BAN SAO\\nSO 12 QD UBND'
    """
    return _cased(text).upper()


def _cased(text: str) -> str:
    """:func:`normalise` keeping the case (ASCII only, so upper-casing keeps every offset)."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    lines = (re.sub(r"[^A-Za-z0-9]+", " ", line).strip() for line in bare.splitlines())
    return "\n".join(line for line in lines if line)


def _capitals(cased: str, start: int, end: int) -> float:
    letters = [c for c in cased[max(0, start):end] if c.isalpha()]
    return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0


def _allowed_errors(phrase: str) -> int:
    n = len(phrase)
    if n < 6:
        return 0
    if n < 10:
        return 1
    if n < 16:
        return 2
    return int(0.22 * n)


@lru_cache(maxsize=256)
def _phrase_codes(phrase: str) -> NDArray[np.int32]:
    return np.frombuffer(phrase.encode("ascii"), np.uint8).astype(np.int32)


def find_phrase(phrase: str, text: str) -> list[tuple[int, int]]:
    """Where ``phrase`` occurs in normalised ``text`` with at most its allowed number of wrong
    letters, starting and ending on word boundaries: ``(errors, end offset)`` pairs. Line breaks
    count as spaces, so a title broken over two lines still matches.

    Approximate substring matching (Sellers' edit distance with a free start), one numpy row per
    letter of the phrase.

    >>> find_phrase("GIAY KHAI SINH", "DANG KY KHAI SINH")    # three letters off: not this title
    []
    >>> find_phrase("GIAY KHAI SINH", "SO 12\\nGIXY KHAI\\nSINH")
    [(1, 20)]
    """
    if not text:
        return []
    flat = text.replace("\n", " ")
    t = np.frombuffer(flat.encode("ascii", "replace"), np.uint8).astype(np.int32)
    n = t.size
    p = _phrase_codes(phrase)
    big = len(phrase) + 1
    space = ord(" ")
    starts = np.ones(n + 1, bool)
    starts[1:] = t == space
    row = np.where(starts, 0, big).astype(np.int32)  # row[j]: cost of a match ending before j
    ramp = np.arange(n + 1, dtype=np.int32)
    for ch in p:
        diag = row[:-1] + (t != ch)
        best = np.empty_like(row)
        best[0] = row[0] + 1
        best[1:] = np.minimum(diag, row[1:] + 1)
        # Insertions along the text: best[j] = min over k <= j of best[k] + (j - k).
        row = np.minimum.accumulate(best - ramp) + ramp
    ends = np.ones(n + 1, bool)
    ends[:-1] = t == space
    ends[0] = False
    limit = _allowed_errors(phrase)
    hits = np.flatnonzero(ends & (row <= limit))
    if hits.size == 0:
        return []
    # Keep one hit per run of neighbouring ends (the best one).
    out: list[tuple[int, int]] = []
    for j in hits.tolist():
        if out and j - out[-1][1] <= 2:
            if row[j] < out[-1][0]:
                out[-1] = (int(row[j]), j)
            continue
        out.append((int(row[j]), j))
    return out


@dataclass(frozen=True)
class TitleEvidence:
    """What the text of a page says about its type.

    ``doctype`` is the class whose title was read first (None if none was), ``strength`` how
    sure that reading is in [0, 1] (1: a whole title read letter for letter), ``scores`` the
    best strength per class, ``words`` how many words were read, ``official`` whether the
    national motto was read and ``vietnamese`` the share of letters with Vietnamese accents.
    """

    doctype: str | None = None
    strength: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
    words: int = 0
    official: bool = False
    vietnamese: float = 0.0
    prices: int = 0
    read: bool = False


def match_titles(raw_text: str) -> TitleEvidence:
    """Score OCR text against :data:`TITLES`. The class named on the earliest line among the
    strong readings (at least 0.75) wins; without one, the strongest weak reading."""
    cased = _cased(raw_text)
    text = cased.upper()
    line_ends = np.cumsum([len(line) + 1 for line in text.split("\n")]) if text else np.zeros(0)
    scores: dict[str, float] = {}
    first_line: dict[str, int] = {}
    for doctype, phrases in TITLES.items():
        for phrase, weight in phrases:
            for errors, end in find_phrase(phrase, text):
                strength = weight * (1.0 - errors / max(1, len(phrase)))
                if phrase not in ANY_CASE and _capitals(cased, end - len(phrase), end) < 0.6:
                    strength *= 0.5  # a title's words in running text: a clue, not a title
                line = int(np.searchsorted(line_ends, end, side="left"))
                if strength > scores.get(doctype, 0.0):
                    scores[doctype] = strength
                if strength >= 0.75 and line < first_line.get(doctype, 1 << 30):
                    first_line[doctype] = line
    if len(_MRZ_FILL.findall(raw_text)) >= 2:  # normalising drops the '<': counted on the raw text
        scores["id_card"] = max(scores.get("id_card", 0.0), MRZ_STRENGTH)
        first_line.setdefault("id_card", 1 << 29)  # at the foot: a title read above it comes first
    official = any(find_phrase(m, text) for m in MOTTO)
    letters = [c for c in raw_text.lower() if c.isalpha()]
    vietnamese = sum(c in _VIET_LETTERS for c in letters) / len(letters) if letters else 0.0
    prices = len(_PRICE.findall(raw_text))
    if prices >= 3:  # a clue, never a title: tables of figures have them too
        scores["receipt"] = max(scores.get("receipt", 0.0), min(0.7, 0.4 + 0.05 * prices))
    words = len(text.split())
    best: str | None = None
    if first_line:
        best = min(first_line, key=lambda d: (first_line[d], -scores[d]))
    elif scores:
        best = max(scores, key=lambda d: scores[d])
    return TitleEvidence(best, scores.get(best, 0.0) if best else 0.0, scores, words, official,
                         round(vietnamese, 3), prices, True)


def is_card(shape: tuple[int, ...]) -> bool:
    """Whether a page of this shape is read whole, as a card: landscape or nearly square."""
    return shape[0] <= 1.2 * shape[1]


def title_crop(page_bgr: NDArray[np.uint8], config: TitleConfig, whole: bool = False) -> NDArray[np.uint8]:
    """The grey crop that carries the type: a card (landscape) whole, scaled to
    ``card_width_px``; a till receipt's first 35%, a page's top ``top_fraction``, scaled to
    ``width_px`` at most. ``whole``: the whole page, read as a card is (a photo in which no
    document was found: the card, wherever it lies).

    >>> title_crop(np.zeros((2970, 2100, 3), np.uint8), TitleConfig()).shape
    (283, 800)
    >>> title_crop(np.zeros((540, 860, 3), np.uint8), TitleConfig()).shape
    (1005, 1600)
    """
    h, w = page_bgr.shape[:2]
    card = whole or is_card(page_bgr.shape)
    if card:
        top = h
    elif h > 1.8 * w:
        top = round(h * 0.35)
    else:
        top = round(h * config.top_fraction)
    crop = page_bgr[: max(1, top)]
    grey = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    width = max(1, grey.shape[1])
    scale = config.card_width_px / width if card else min(1.0, config.width_px / width)
    if scale != 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    return np.asarray(grey, np.uint8)


@lru_cache(maxsize=8)
def tesseract_has(language: str) -> bool:
    """Whether the ``tesseract`` program and ``language`` are installed (asked once)."""
    exe = shutil.which("tesseract")
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return language in out.stdout.split()


class PendingTitle:
    """A title reading under way in a Tesseract child process."""

    def __init__(self, proc: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
        self._proc = proc
        self._timeout = timeout_s

    def result(self) -> TitleEvidence:
        """Wait for the reading (at most the configured timeout) and match it. A failed or slow
        reading is no evidence (``read`` False), never an error: the image model still answers."""
        proc = self._proc
        if proc is None:
            return TitleEvidence()
        try:
            out, _ = proc.communicate(timeout=self._timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            _log.warning("title reading took longer than %.1f s; typed from the image alone", self._timeout)
            return TitleEvidence()
        except OSError as exc:
            _log.warning("title reading failed: %s", type(exc).__name__)
            return TitleEvidence()
        if proc.returncode != 0:
            _log.warning("title reading failed (tesseract exit %s)", proc.returncode)
            return TitleEvidence()
        return match_titles(out.decode("utf-8", "replace"))


class TitleReader:
    """Reads the title of upright pages with Tesseract.

    >>> reader = TitleReader(TitleConfig())
    >>> reader.read(page_bgr).doctype            # doctest: +SKIP
    'birth_certificate'
    """

    def __init__(self, config: TitleConfig | None = None) -> None:
        self.config = config or TitleConfig()
        enabled = self.config.enabled
        self.available = tesseract_has(self.config.language) if enabled is None else enabled
        self._exe = shutil.which("tesseract") or "tesseract"
        #: Pin each Tesseract child to this core (None: wherever the system puts it).
        self.cpu: int | None = None

    def start(self, page_bgr: NDArray[np.uint8], whole: bool = False) -> PendingTitle:
        """Start reading ``page_bgr``'s title (``whole``: anywhere on it, see :func:`title_crop`)
        in a child process and return at once."""
        if not self.available:
            return PendingTitle(None, 0.0)
        ok, png = cv2.imencode(".png", title_crop(page_bgr, self.config, whole))
        if not ok:
            return PendingTitle(None, 0.0)
        # A page's head is a block of lines; a card's words are scattered around a photo, a
        # chip, an emblem and guilloche: sparse text finds them where a block reading loses them.
        psm = "11" if whole or is_card(page_bgr.shape) else "6"
        cmd = [self._exe, "stdin", "stdout", "-l", self.config.language, "--psm", psm,
               "-c", "tessedit_do_invert=0"]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    env={"OMP_THREAD_LIMIT": "1", "PATH": "/usr/bin:/bin:/usr/local/bin"})
        except OSError as exc:
            _log.warning("cannot start tesseract for the title: %s", type(exc).__name__)
            return PendingTitle(None, 0.0)
        if self.cpu is not None and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(proc.pid, {self.cpu})
        try:
            # Tesseract reads all of stdin before it starts: the write returns quickly.
            assert proc.stdin is not None
            proc.stdin.write(png.tobytes())
            proc.stdin.close()
            proc.stdin = None  # written and closed: communicate() must not flush it again
        except OSError as exc:
            proc.kill()
            proc.communicate()
            _log.warning("cannot hand the title crop to tesseract: %s", type(exc).__name__)
            return PendingTitle(None, 0.0)
        return PendingTitle(proc, self.config.timeout_s)

    def read(self, page_bgr: NDArray[np.uint8], whole: bool = False) -> TitleEvidence:
        """Read and match ``page_bgr``'s title (blocking)."""
        return self.start(page_bgr, whole).result()
