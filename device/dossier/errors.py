"""The dossier session's errors, and the fault codes a person is shown for a capture or
hand-off failure.

>>> from device.errors import ScannerBusy
>>> fault_of(ScannerBusy("busy"))
'scanner_busy'
"""

from __future__ import annotations

from device.dossier.model import Fault, State
from device.errors import CameraUnavailable, NoScanner, OutboxFull, ScannerBusy, ScannerFault, SohoaError


class SessionError(SohoaError):
    """Root of the session's own errors."""


class InvalidSessionAction(SessionError, RuntimeError):
    """The action makes no sense in the current state (e.g. finishing while a scan runs). Nothing
    changed: the session is still in :attr:`state`."""

    def __init__(self, action: str, state: State) -> None:
        super().__init__(f"cannot {action} while the session is {state}")
        self.action = action
        self.state = state


class UpdateInProgress(InvalidSessionAction):
    """No dossier opens while a software update installs (the update lock): the screen and the
    buttons say so, and the clerk tries again once it is done (a few minutes)."""

    def __init__(self, state: State) -> None:
        super().__init__("open a dossier", state)
        self.args = ("a software update is being installed; no dossier can be opened until it is done",)


class InvalidDossierCode(SessionError, ValueError):
    """A typed or scanned dossier code does not have the expected shape."""


class ForeignDossierCode(InvalidDossierCode):
    """The dossier code belongs to another agency than the device's (``session.own_agencies``):
    not taken; the clerk is told."""


class UnknownPage(SessionError, KeyError):
    """No page with that id in the open dossier."""


class InvalidDoctype(SessionError, ValueError):
    """Not one of the classifier's class ids (``device.inference.doctype.DOCTYPES``)."""


_SCANNER_FAULTS: tuple[Fault, ...] = (
    "scanner_jammed", "scanner_cover_open", "scanner_no_docs", "scanner_io_error", "scanner_gone"
)


def fault_of(exc: BaseException) -> Fault:
    """The session's fault code for a capture exception."""
    if isinstance(exc, ScannerFault):
        event_type: str = exc.event_type
        for known in _SCANNER_FAULTS:
            if event_type == known:
                return known
        return "scanner_io_error"
    if isinstance(exc, CameraUnavailable):
        return "camera_unavailable"
    if isinstance(exc, NoScanner):
        return "no_scanner"
    if isinstance(exc, ScannerBusy):
        return "scanner_busy"
    if isinstance(exc, OutboxFull):
        return "disk_full"
    return "capture_error"
