"""A capture source that tests drive and that records what happened (gpiozero's MockPin is
the model): load sheets, inject a jam or an unplug, then read ``history``.

>>> source = FakeSource(pages=3)
>>> source.jam_at(2)
>>> pages = []
>>> try:
...     for page in source.pages(ScanRequest()):
...         pages.append(page.sequence)
... except ScannerJammed:
...     pass
>>> pages, source.history[-1]
([1], 'fault scanner_jammed')
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from device.capture.base import CapturedPage, CaptureSource, ScanRequest, encode_png
from device.errors import ScannerFault, ScannerGone, ScannerJammed, ScannerNoDocs


class FakeSource(CaptureSource):
    """Generated pages; each batch yields ``pages`` images (a full feeder), unless told otherwise."""

    kind = "scanner"

    def __init__(self, pages: int = 3, width: int = 310, height: int = 438, dpi: int = 75, noise: bool = False) -> None:
        self.per_batch = pages
        self.noise = noise
        self.width = width
        self.height = height
        self.dpi = dpi
        self.history: list[str] = []
        self._faults: dict[int, type[ScannerFault]] = {}
        self._gone = False
        self._stop = threading.Event()
        self.batches = 0
        self.hold_before: int | None = None
        """Hold the next batch before this page until :meth:`resume` (or :meth:`stop`)."""
        self.held = threading.Event()
        """Set while a batch is held."""
        self._release = threading.Event()

    @property
    def model(self) -> str | None:
        return "Sohoa fake scanner"

    def jam_at(self, sequence: int) -> None:
        """The next batch jams when it reaches page ``sequence`` (pages before it are yielded)."""
        self._faults[sequence] = ScannerJammed

    def fault_at(self, sequence: int, error: type[ScannerFault]) -> None:
        self._faults[sequence] = error

    def unplug(self) -> None:
        self._gone = True
        self.history.append("unplugged")

    def plug(self) -> None:
        self._gone = False
        self.history.append("plugged")

    def page_image(self, batch: int, sequence: int) -> bytes:
        import numpy as np
        from PIL import Image

        y, x = np.mgrid[0 : self.height, 0 : self.width]
        pixels = np.stack(
            [(x * 255 // max(self.width, 1)), (y * 255 // max(self.height, 1)), np.full_like(x, sequence * 20 % 256)],
            axis=-1,
        ).astype(np.uint8)
        if self.noise:
            pixels = np.random.default_rng().integers(0, 256, pixels.shape, dtype=np.uint8)
        pixels[: 8 + batch % 8, : 8 + sequence % 8] = 0  # every page differs
        return encode_png(Image.fromarray(pixels, "RGB"), self.dpi)

    def pages(self, request: ScanRequest) -> Iterator[CapturedPage]:
        self._stop.clear()
        self._release.clear()
        self.batches += 1
        self.history.append(f"batch {self.batches} {request.source or 'adf'}")
        if self._gone:
            self.history.append("fault scanner_gone")
            raise ScannerGone("scanner unplugged")
        limit = min(self.per_batch, request.max_pages or self.per_batch)
        if request.source == "flatbed":
            limit = min(limit, 1)
        if limit == 0:
            self.history.append("fault scanner_no_docs")
            raise ScannerNoDocs("Document feeder out of documents")
        faults, self._faults = self._faults, {}
        for sequence in range(1, limit + 1):
            if self._stop.is_set():
                self.history.append("stopped")
                return
            if sequence == self.hold_before:
                self.history.append(f"held before {sequence}")
                self.held.set()
                self._release.wait(60)
                self.held.clear()
                if self._stop.is_set():
                    self.history.append("stopped")
                    return
            if sequence in faults:
                error = faults[sequence]
                self.history.append(f"fault {error.event_type}")
                raise error(f"fake {error.event_type}")
            self.history.append(f"page {sequence}")
            data = self.page_image(self.batches, sequence)
            yield CapturedPage(data, "image/png", self.width, self.height, self.dpi, sequence)

    def recover(self) -> None:
        self.history.append("recovered")

    def resume(self) -> None:
        """Let a held batch go on."""
        self._release.set()

    def stop(self) -> None:
        self._stop.set()
        self._release.set()

    def close(self) -> None:
        self.history.append("closed")
