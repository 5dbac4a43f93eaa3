"""Scanners being plugged and unplugged, seen through pyusb (imported on first use).

pyusb offers no hot-plug callback, so the bus is compared with its previous look every few
seconds. A device counts as a scanner when its vendor makes document scanners or one of its
interfaces is vendor-specific or still-image class. The model comes from the USB product string
when we may read it, else from the ids.

>>> watcher = UsbWatcher(on_change=print)  # doctest: +SKIP
>>> watcher.poll()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

# USB vendor ids of document-scanner makers (usb.ids).
SCANNER_VENDORS = {
    0x03F0: "HP",
    0x040A: "Kodak",
    0x04A7: "Visioneer",
    0x04A9: "Canon",
    0x04B8: "Epson",
    0x04C5: "Fujitsu/PFU",
    0x04DA: "Panasonic",
    0x04F9: "Brother",
    0x0638: "Avision",
    0x07B3: "Plustek",
    0x1083: "Canon Electronics",
    0x29CC: "Kodak Alaris",
}
_SCANNER_CLASSES = {0x06, 0xFF}  # still image, vendor specific


@dataclass(frozen=True, slots=True)
class UsbDevice:
    bus: int
    address: int
    vendor_id: int
    product_id: int
    model: str | None


Change = Literal["attached", "detached"]


def _describe(dev: Any) -> UsbDevice | None:
    vendor = int(dev.idVendor)
    classes: set[int] = {int(dev.bDeviceClass)}
    try:
        for cfg in dev:
            for intf in cfg:
                classes.add(int(intf.bInterfaceClass))
    except Exception as exc:
        log.debug("cannot read USB interfaces: %s", exc)
    if vendor not in SCANNER_VENDORS or not (classes & _SCANNER_CLASSES):
        return None
    model: str | None = None
    try:
        import usb.util

        product = usb.util.get_string(dev, dev.iProduct) if dev.iProduct else None
        model = f"{SCANNER_VENDORS[vendor]} {product}" if product else None
    except Exception as exc:
        log.debug("cannot read the USB product string: %s", exc)
    model = model or f"{SCANNER_VENDORS[vendor]} {vendor:04x}:{int(dev.idProduct):04x}"
    return UsbDevice(int(dev.bus or 0), int(dev.address or 0), vendor, int(dev.idProduct), model[:128])


def list_scanners() -> list[UsbDevice]:
    """The scanner-like USB devices attached now (empty without a libusb backend)."""
    try:
        import usb.core

        devices = list(usb.core.find(find_all=True))
    except Exception as exc:
        log.debug("cannot list USB devices: %s", exc)
        return []
    found = []
    for dev in devices:
        described = _describe(dev)
        if described is not None:
            found.append(described)
    return found


class UsbWatcher:
    """Compares successive looks at the bus and calls ``on_change(change, device)``."""

    def __init__(
        self,
        on_change: Callable[[Change, UsbDevice], None],
        lister: Callable[[], Iterable[UsbDevice]] = list_scanners,
    ) -> None:
        self.on_change = on_change
        self.lister = lister
        self._known: dict[tuple[int, int, int, int], UsbDevice] | None = None

    def poll(self) -> None:
        """Look at the bus once; the first look reports what is already attached."""
        now = {(d.bus, d.address, d.vendor_id, d.product_id): d for d in self.lister()}
        before = self._known or {}
        for key, dev in now.items():
            if key not in before:
                log.info("scanner attached: %s", dev.model)
                self.on_change("attached", dev)
        for key, dev in before.items():
            if key not in now:
                log.info("scanner detached: %s", dev.model)
                self.on_change("detached", dev)
        self._known = now

    def close(self) -> None:
        self._known = None

    def __enter__(self) -> UsbWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
