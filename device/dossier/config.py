"""How dossiers are opened, named and closed (``session:``) and how their PDFs are made
(``pdf:``): the settings apart from the code, so reading a config file imports neither.

>>> SessionConfig().max_pages, PdfConfig().dpi
(300, 200)
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SessionConfig(BaseModel):
    """How dossiers are opened, named and closed. The agent's config includes it as ``session:``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dossier_code_pattern: str = Field(
        default=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$",
        description="Regular expression a dossier code must match (it becomes part of PDF file names: no '/')",
    )
    walk_in_prefix: str = Field(
        default="WALKIN",
        pattern=r"^[A-Za-z0-9_\-]{1,16}$",
        description="PDF name prefix for a walk-in dossier closed before anyone named it: <prefix>-<8 hex>",
    )
    adopt_receipt_code: bool = Field(
        default=True,
        description="Name an unnamed dossier from the receipt-slip QR found on one of its pages",
    )
    keep_receipt_slip: bool = Field(
        default=True, description="Keep the receipt slip that named the dossier as one of its pages"
    )
    drop_blank_pages: bool = Field(
        default=True, description="Keep blank pages (e.g. empty duplex backs) out of the PDFs; they are still sent"
    )
    group_by_doctype: bool = Field(
        default=True,
        description="Start a new PDF (dossier component) where the document type changes; else one PDF per dossier",
    )
    max_pages: int = Field(
        default=300,
        ge=1,
        le=10000,
        description="Pages one dossier may hold (each is held in memory until the dossier closes: about 12 MB "
        "at 200 dpi, 26 MB at 300 dpi, plus its file)",
    )
    own_agencies: list[str] = Field(
        default_factory=list,
        description="Agency codes whose dossiers this device takes (a code's agency is its part before the first "
        "'-'): an entry matches the whole agency code (000.00.12.H10) or its last part, the province (H10). Empty: "
        "every code. A receipt QR or typed code of another agency is refused and the clerk is told",
    )
    keep_results: bool = Field(
        default=False,
        description="Keep each page's full pipeline result (with its source image: twice the memory) for "
        "debugging; the verdict is always kept",
    )

    @field_validator("own_agencies")
    @classmethod
    def _agencies(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.]{0,31}", entry):
                raise ValueError(f"{entry!r} is not an agency code (letters, digits and dots)")
        return [entry.upper() for entry in value]

    def takes(self, code: str) -> bool:
        """Whether a dossier code belongs to one of :attr:`own_agencies` (always, when none is set).

        >>> config = SessionConfig(own_agencies=["H10"])
        >>> config.takes("000.00.12.H10-260101-0001"), config.takes("000.00.12.H22-260101-0001")
        (True, False)
        """
        if not self.own_agencies:
            return True
        agency = code.strip().split("-", 1)[0].upper()
        return agency in self.own_agencies or agency.rsplit(".", 1)[-1] in self.own_agencies

    @field_validator("dossier_code_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class PdfConfig(BaseModel):
    """How dossier PDFs are made (the ``pdf:`` section of the device's config)."""

    model_config = ConfigDict(extra="forbid")

    dpi: int = Field(200, ge=200, le=600, description="Resolution pages are stored at (the rules ask for 200 or more)")
    drawing_dpi: int = Field(300, ge=300, le=600, description="Resolution for maps and drawings")
    drawing_doctypes: list[str] = Field(
        default_factory=lambda: ["map", "drawing"], description="Document types stored at drawing_dpi"
    )
    jpeg_quality: int = Field(70, ge=30, le=100, description="JPEG quality of the page images")
    flatten_paper: bool = Field(
        True, description="Even out the paper's shading to white before compression (smaller, cleaner)"
    )
    ocr: Literal["auto", "on", "off"] = Field(
        "auto", description="Add a text layer with Tesseract: auto = when tesseract and its language are installed"
    )
    ocr_language: str = Field("vie", description="Tesseract language for the text layer")
    ocr_timeout_s: float = Field(120, gt=0, description="Longest Tesseract may take on one page")
    pdfa: bool = Field(True, description="Write PDF/A-2b metadata and an sRGB output intent")
