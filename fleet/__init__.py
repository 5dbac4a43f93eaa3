"""The Sohoa fleet manager: enrolls devices, ingests their traffic, stores pages, reports."""

from protocol import __version__

__all__ = ["__version__"]
