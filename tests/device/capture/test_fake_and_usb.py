"""The fake source tests drive, and the USB hot-plug watcher with a scripted bus."""

from __future__ import annotations

import pytest

from device.capture.base import ScanRequest
from device.capture.fake import FakeSource
from device.capture.usbwatch import UsbDevice, UsbWatcher, list_scanners
from device.errors import ScannerCoverOpen, ScannerGone, ScannerNoDocs


def test_fake_records_what_happened() -> None:
    """Pages before an injected fault are yielded; faults, unplugging and empty feeders raise."""
    source = FakeSource(pages=4)
    source.fault_at(3, ScannerCoverOpen)
    got = []
    with pytest.raises(ScannerCoverOpen):
        for page in source.pages(ScanRequest()):
            got.append(page.sequence)
    assert got == [1, 2]
    assert len(list(source.pages(ScanRequest(source="flatbed")))) == 1
    source.unplug()
    with pytest.raises(ScannerGone):
        list(source.pages(ScanRequest()))
    source.plug()
    empty = FakeSource(pages=0)
    with pytest.raises(ScannerNoDocs):
        list(empty.pages(ScanRequest()))
    assert source.history == ["batch 1 adf", "page 1", "page 2", "fault scanner_cover_open", "batch 2 flatbed",
                              "page 1", "unplugged", "batch 3 adf", "fault scanner_gone", "plugged"]
    pages = list(FakeSource(pages=2).pages(ScanRequest()))
    assert pages[0].data != pages[1].data  # every page differs


def test_usb_watcher_reports_attach_and_detach() -> None:
    """A scripted bus: a scanner plugged in, another added, the first pulled out."""
    epson = UsbDevice(1, 4, 0x04B8, 0x013A, "Epson DS-530")
    fujitsu = UsbDevice(1, 5, 0x04C5, 0x132B, "Fujitsu/PFU fi-7160")
    looks = [[], [epson], [epson, fujitsu], [fujitsu]]
    seen: list[tuple[str, str | None]] = []
    watcher = UsbWatcher(lambda change, dev: seen.append((change, dev.model)), lister=lambda: looks.pop(0))
    for _ in range(4):
        watcher.poll()
    assert seen == [("attached", "Epson DS-530"), ("attached", "Fujitsu/PFU fi-7160"), ("detached", "Epson DS-530")]


def test_real_bus_listing_does_not_fail() -> None:
    """On this machine (no scanner on USB) the real pyusb listing returns a list, never raises."""
    assert isinstance(list_scanners(), list)
