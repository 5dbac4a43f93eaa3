"""The page pipeline's settings (the ``pipeline:`` and ``doctype:`` sections of the device's
config), apart from the code that uses them: reading a config file imports no OpenCV.

>>> PipelineConfig().quality.min_dpi
200
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
"""Where the shipped models live (``device/models``)."""


class QualityConfig(BaseModel):
    """Thresholds of the quality verdict. Defaults come from the calibration reported in
    ``benchmarks/RESULTS.md`` (degraded real pages)."""

    model_config = ConfigDict(extra="forbid")

    min_sharpness: float = Field(
        0.5,
        description="Below this, the page is blurry: edge slope over local contrast (90th percentile), "
        "measured with the page's long side at 1000 px",
    )
    min_paper_level: float = Field(
        105, description="Below this 0-255 brightness of the paper (90th percentile), the page is too dark"
    )
    min_text_contrast: float = Field(
        100,
        description="When the paper is clipped white, below this 0-255 difference between paper and "
        "the darkest text (1st percentile) the page is too bright",
    )
    min_clipped_fraction: float = Field(
        0.3, description="Share of the page burnt to pure white from which faded text counts as too bright"
    )
    max_glare_fraction: float = Field(
        0.004, description="Share of the page that may be burnt-out highlight brighter than the paper"
    )
    max_skew_deg: float = Field(4.0, description="Larger turn of the page from straight, in degrees, is skewed")
    max_perspective_deg: float = Field(
        25.0, description="Larger departure of a corner from 90 degrees (camera not parallel) is skewed"
    )
    max_border_contact: float = Field(
        0.05,
        description="Share of a frame side the document may run into (or, when the page fills the frame, "
        "ink density just inside a side) before it counts as cut off",
    )
    min_receipt_top_margin: float = Field(
        0.5, ge=0.0,
        description="Till receipts: less blank paper above the first printed line than this many line heights "
        "means the receipt's top was cut off (0 turns the check off)",
    )
    min_area_fraction: float = Field(
        0.2, description="Camera frames: the document must fill at least this share of the frame"
    )
    min_dpi: float = Field(200, description="Effective dpi on the document below this is low resolution")
    min_dpi_drawings: float = Field(300, description="The same for maps and drawings")
    drawing_doctypes: list[str] = Field(
        default_factory=lambda: ["map", "drawing"],
        description="Document types held to min_dpi_drawings",
    )
    max_blank_ink: float = Field(
        0.0015, description="A page whose share of ink pixels (away from its edges) is below this is blank"
    )


ReceiptForm = Literal["fields", "code_only", "url"]


class ReceiptRules(BaseModel):
    """Which QR contents name a dossier. The circular fixes what a slip's QR holds, not how:
    provinces' one-stop systems print the four fields, the code alone, or a look-up URL.

    >>> from device.inference.codes import parse_text
    >>> rules = ReceiptRules(forms=["fields"])
    >>> parse_text("QRCode", "000.00.12.H10-260101-0001", rules).kind
    'other'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    forms: list[ReceiptForm] = Field(
        default=["fields", "code_only", "url"],
        description="QR shapes taken as a receipt slip: 'fields' (dossier code, procedure code, applicant id, "
        "document name; any separator, JSON or key=value), 'code_only' (the QR holds only a dossier code), "
        "'url' (a look-up URL on one of url_hosts with the code in its query or path)",
    )
    code_pattern: str = Field(
        default=r"\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}-\d{6}-\d{4,6}",
        description="Regular expression (whole match) of a dossier code standing alone, in the 'code_only' and 'url' "
        "forms, where nothing else says the text is a dossier code (the national form: agency code, YYMMDD, sequence)",
    )
    url_hosts: list[str] = Field(
        default_factory=lambda: ["gov.vn"],
        description="Hosts whose look-up URLs name a dossier: a host matches itself and its subdomains",
    )
    url_query_keys: list[str] = Field(
        default_factory=lambda: ["maHoSo", "ma_ho_so", "mahoso", "soHoSo", "so_ho_so", "hoso", "dossier_code", "code"],
        description="Query parameters (case-insensitive) that may hold the dossier code in a look-up URL",
    )

    @field_validator("code_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class CodesConfig(BaseModel):
    """How pages are searched for codes."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Look for QR codes and barcodes on every page")
    receipt: ReceiptRules = Field(
        default_factory=ReceiptRules, description="Which QR contents name a dossier (the receipt slip)"
    )
    short_side: int = Field(
        1240, ge=300, description="Short side in pixels the page is reduced to before decoding (150 dpi on A4)"
    )


class OsdConfig(BaseModel):
    """Settings of the Tesseract orientation check (the ``pipeline.osd:`` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True, description="Ask Tesseract's OSD before turning a page; off (or Tesseract missing): never turn a page"
    )
    min_confidence: float = Field(
        0.5, ge=0, description="Tesseract's orientation confidence (about 1: a guess, above 5: sure) from which "
        "its answer turns the page when it is the pipeline's own measure's answer too"
    )
    min_confidence_to_overrule: float = Field(
        1.5, ge=0, description="Tesseract's confidence from which its answer alone turns the page (the pipeline's "
        "own measure unsure, or of another answer); below it, and below min_confidence, the page is left as it is"
    )
    check_upright_below: float = Field(
        0.5, ge=0, le=1.01, description="The pipeline's own measure's confidence (0..1) below which a page it "
        "calls upright is checked with Tesseract too (above: no check, the fast path; till receipts are "
        "always checked)"
    )
    max_letters: int = Field(
        100, ge=20, le=1000, description="Letters Tesseract classifies at most per page (time grows with it)"
    )
    second_reading_letters: int = Field(
        300, ge=0, le=1000, description="When the first reading names a turn without being sure of it (between "
        "min_confidence and min_confidence_to_overrule), Tesseract reads the page again with this many letters "
        "at most (about twice the time); 0: no second reading"
    )
    second_reading_min_confidence: float = Field(
        2.0, ge=0, description="The second, longer reading turns the page when it names the same turn with this "
        "confidence (more letters give higher confidences than the first reading's)"
    )
    target_dpi: float = Field(
        300, ge=100, description="Resolution the page is scaled to for Tesseract (it ignores letters under 10 "
        "pixels high, so small print needs about 300 dpi)"
    )
    long_side: int = Field(3600, ge=400, description="Long side in pixels of the grey copy Tesseract reads, at most")


class PipelineConfig(BaseModel):
    """Settings of the page pipeline (the ``pipeline:`` section of the device's config)."""

    model_config = ConfigDict(extra="forbid")

    max_pixels: int = Field(
        80_000_000, ge=1_000_000, description="Images with more pixels are refused before decoding (A3 at 600 dpi fits)"
    )
    source: Literal["auto", "scan", "camera"] = Field(
        "auto", description="Where pages come from; auto: scan when the file carries a dpi, else camera"
    )
    work_short_side: int = Field(
        1240, ge=400, description="Short side in pixels of the working copy that codes are read from"
    )
    analysis_short_side: int = Field(
        900, ge=300, description="Short side in pixels of the copy skew and orientation are measured on"
    )
    detect_long_side: int = Field(640, ge=200, description="Long side in pixels of the copy the document is found on")
    min_orientation_confidence: float = Field(
        0.1, ge=0, le=1, description="Below this confidence the pipeline's own measure's turn is not weighed: "
        "only Tesseract's answer alone (osd.min_confidence_to_overrule) can turn the page"
    )
    osd: OsdConfig = Field(default_factory=OsdConfig, description="Tesseract's orientation check (second opinion)")
    min_skew_correction_deg: float = Field(0.3, ge=0, description="Smaller skew is left alone")
    quality: QualityConfig = Field(default_factory=QualityConfig, description="Quality verdict thresholds")
    codes: CodesConfig = Field(default_factory=CodesConfig, description="QR code and barcode reading")


class TitleConfig(BaseModel):
    """Reading the title with Tesseract (the ``doctype.text:`` section of the device's config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = Field(
        default=None, description="Read the title: None = when tesseract and the language are installed"
    )
    language: str = Field(default="vie", max_length=32, description="Tesseract language of the title")
    width_px: int = Field(default=800, ge=300, le=3000, description="Width the crop is scaled down to")
    card_width_px: int = Field(
        default=1600, ge=300, le=3000,
        description="Width a card (a landscape page, read whole) is scaled to, up or down: cards are "
        "photographed small, and their title and labels need the pixels",
    )
    top_fraction: float = Field(
        default=0.25, gt=0, le=1, description="Share of a portrait page's height read from the top"
    )
    timeout_s: float = Field(default=3.0, gt=0, description="A reading taking longer is abandoned")
    when: Literal["unsure", "always"] = Field(
        default="unsure",
        description="unsure: read the title only when the image model alone is below doctype.min_confidence "
        "or answers other (a page sure to be one of the counter's classes, verdict included, never waits "
        "for Tesseract); always: read every page "
        "(about 0.4 s of CPU per page before its result)",
    )


class DoctypeConfig(BaseModel):
    """Which document-type model to load and how to use it.

    >>> DoctypeConfig(min_confidence=0.6).num_threads
    1
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model_path: Path = Field(
        default=MODELS_DIR / "doctype.tflite",
        description="The int8 TFLite classifier. Default: the model shipped in device/models.",
    )
    labels_path: Path = Field(
        default=MODELS_DIR / "doctype_labels.txt",
        description="One class per line in model output order: `<id><TAB><Vietnamese label>`.",
    )
    version: str | None = Field(
        default=None,
        description="Model version reported with results; None reads `<model stem>_version.txt` "
        "beside the model (or 'unknown').",
    )
    min_confidence: float = Field(
        default=0.85,
        ge=0.0,
        le=1.0,
        description="Below this confidence a page is typed `unsure` (its confidence is kept) and the "
        "clerk is asked what it is. 0.85: the lowest floor at which 95% of the answers given were right "
        "on photographed and scanned renders with held-out fonts and layouts (benchmarks/RESULTS.md).",
    )
    text: TitleConfig = Field(
        default_factory=TitleConfig, description="Reading the printed title with Tesseract to type the page"
    )
    num_threads: int = Field(default=1, ge=1, le=8, description="Interpreter threads (1 leaves cores to the rest).")
    input_size: int | None = Field(
        default=None,
        ge=32,
        le=1024,
        description="Square input side in pixels; None takes it from the model. Set it only to "
        "have a mismatched model rejected at start-up.",
    )
