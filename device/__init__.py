"""The Sohoa device agent: capture pages, check them, tie them to dossiers, deliver them."""

from protocol import __version__

__all__ = ["__version__"]
