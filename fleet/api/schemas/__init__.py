"""Response models of the HTTP API (what clients see; the tables stay free to change)."""

from fleet.api.schemas.devices import DeviceOut, OutboxOut
from fleet.api.schemas.events import EventOut
from fleet.api.schemas.files import FileOut
from fleet.api.schemas.pages import PageOut

__all__ = ["DeviceOut", "EventOut", "FileOut", "OutboxOut", "PageOut"]
