"""The citizens' kiosk screen: a loopback web app (stdlib WSGI) driving the dossier session.
Importing it touches no camera; :class:`KioskApp` starts its camera loop when made."""

from device.kiosk.app import KioskApp, KioskServer
from device.kiosk.config import KioskConfig

__all__ = ["KioskApp", "KioskConfig", "KioskServer"]
