"""``sohoa-device inspect FILE|FOLDER...``: run the page pipeline on image files and print one
JSON object per line; ``--pdf OUT.pdf`` also files the pages as one dossier PDF.

This is also how a unit digitizes an archive scanned before Sohoa: folders are walked in name
order and progress goes to stderr. A file that cannot be read gives a line with ``error``; the
others still run, and the exit status is then 2.

CCCD fields and applicant ids are personal data: they are masked in the output (``***``).
"""

import datetime as dt
import json
import logging
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, Field

from device.dossier.config import PdfConfig
from device.dossier.pdf_writer import DossierInfo, PdfBuilder, PdfPage, sha256_file
from device.errors import ConfigInvalid, ImageRejected
from device.inference.config import PipelineConfig
from device.inference.pipeline import Classifier, PagePipeline, PageResult

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".pbm", ".pgm", ".ppm"}


class InspectSettings(BaseModel):
    """The sections of the device's config file that ``inspect`` uses; the rest belongs to the
    agent and is checked by ``validate-config``."""

    model_config = ConfigDict(extra="ignore")

    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="The page pipeline")
    pdf: PdfConfig = Field(default_factory=PdfConfig, description="The dossier PDF")


def load_settings(path: str | None) -> InspectSettings:
    if path is None:
        return InspectSettings()
    from protocol.configfile import ConfigError, load_config

    try:
        return load_config(InspectSettings, Path(path))
    except ConfigError as exc:
        raise ConfigInvalid(str(exc)) from None


def expand(paths: list[str]) -> Iterator[Path]:
    """Files as given; folders walked recursively for image files, in name order."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                        yield Path(root) / name
        else:
            yield p


def load_classifier() -> Classifier | None:
    """The document-type classifier (the shipped TFLite model); when its model is unusable it answers
    ``other`` for every page, and when the module is absent the type is left empty."""
    try:
        from device.inference import doctype
    except ImportError:
        return None
    from device.inference.config import DoctypeConfig

    classifier: Classifier = doctype.load_classifier_or_fallback(DoctypeConfig())
    return classifier


def result_line(name: str, r: PageResult, ms: float) -> dict[str, Any]:
    return {
        "file": name,
        "doctype": r.doctype,
        "confidence": None if r.confidence is None else round(r.confidence, 3),
        "quality": r.verdict.as_dict(),
        "quad": None if r.quad is None else [[round(float(x)), round(float(y))] for x, y in r.quad],
        "orientation": r.orientation,
        "codes": [c.as_dict() for c in r.codes],
        "ms": round(ms, 1),
        "skew_deg": round(r.skew_deg, 2),
        "dpi": None if r.dpi is None else round(r.dpi),
    }


class Progress:
    """Progress on stderr: a rewritten line on a terminal, a line every few seconds otherwise."""

    def __init__(self, stream: TextIO, total: int, every_s: float = 5.0) -> None:
        self.stream = stream
        self.total = total
        self.tty = stream.isatty()
        self.every_s = every_s
        self.start = time.monotonic()
        self.last = self.start
        self.done = 0
        self.errors = 0
        self.shown = -1

    def step(self, error: bool) -> None:
        self.done += 1
        self.errors += int(error)
        now = time.monotonic()
        if self.tty or now - self.last >= self.every_s:
            self._show(now)

    def _show(self, now: float) -> None:
        self.last = now
        self.shown = self.done
        rate = self.done / max(1e-6, now - self.start)
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        eta = f", about {left / 60:.0f} min left" if self.done < self.total and left >= 60 else ""
        line = (
            f"sohoa-device inspect: {self.done}/{self.total} file(s), {rate:.1f}/s, "
            f"{self.errors} error(s){eta}"
        )
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def finish(self) -> None:
        if self.shown != self.done:
            self._show(time.monotonic())
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()


def inspect_main(
    files: list[str],
    pdf: str | None = None,
    config: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the pipeline on ``files`` (and folders); 0 when all were read, 2 when any was not."""
    out = out or sys.stdout
    err = err or sys.stderr
    settings = load_settings(config)
    paths = list(expand(files))  # walking even a large archive's folders is quick; shows a total
    progress = Progress(err, len(paths))
    status = 0
    doctypes: Counter[str] = Counter()
    dossier_code: str | None = None
    builder = PdfBuilder(settings.pdf) if pdf else None
    first_capture: dt.datetime | None = None
    try:
        with PagePipeline(settings.pipeline, load_classifier()) as pipeline:
            for path in paths:
                start = time.perf_counter()
                try:
                    result = pipeline.process_file(path)
                except ImageRejected as exc:
                    out.write(json.dumps({"file": str(path), "error": str(exc)}, ensure_ascii=False) + "\n")
                    out.flush()
                    status = 2
                    progress.step(True)
                    continue
                ms = (time.perf_counter() - start) * 1000
                out.write(json.dumps(result_line(str(path), result, ms), ensure_ascii=False) + "\n")
                out.flush()
                for code in result.codes:
                    if code.kind == "dossier_receipt" and dossier_code is None:
                        dossier_code = code.fields.get("dossier_code")
                if builder is not None:
                    if result.doctype and not result.blank:
                        doctypes[result.doctype] += 1
                    if first_capture is None:
                        first_capture = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
                    builder.add(
                        PdfPage(
                            result.render(),
                            result.dpi,
                            sha256_file(path),
                            blank=result.blank,
                            doctype=result.doctype,
                        )
                    )
                progress.step(False)
        progress.finish()
        if builder is not None and pdf is not None:
            target = Path(pdf)
            info = DossierInfo(
                dossier_code=dossier_code or target.stem.split(".")[0],
                sequence=1,
                document_type=doctypes.most_common(1)[0][0] if doctypes else "other",
                unit="",
                device=socket.gethostname(),
                captured_at=first_capture or dt.datetime.now(dt.UTC),
            )
            report = builder.finish(target, info)
            dropped = ", ".join(f"page {i} ({why})" for i, why in report.dropped) or "none"
            err.write(
                f"sohoa-device inspect: wrote {target} ({report.pages} page(s), "
                f"{report.bytes_per_page / 1024:.0f} KiB/page, text layer: "
                f"{'yes' if report.text_layer else 'no'}; left out: {dropped})\n"
            )
    finally:
        if builder is not None:
            builder.close()
    return status
