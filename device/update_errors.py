"""Errors of the device's updater (``device/updater.py``), under the agent's root :class:`SohoaError`."""

from device.errors import SohoaError


class UpdateError(SohoaError, RuntimeError):
    """An update could not be carried out; the device keeps running its current slot."""


class DownloadFailed(UpdateError, ConnectionError):
    """The bundle could not be fetched completely (after retries, resuming each time)."""


class BundleRefused(UpdateError, ValueError):
    """The bundle is unsigned, signed by an unknown key, tampered with, or not for this device."""


class InstallFailed(UpdateError, OSError):
    """Writing the inactive slot failed (disk, pip); the active slot is untouched."""


class OfferWithdrawn(DownloadFailed):
    """The fleet no longer offers this update (410: its rollout was cancelled or halted while the
    offer waited in the broker or on the device); nothing is installed and nothing is retried."""
