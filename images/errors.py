"""Errors of the bundle tools. Each inherits :class:`BundleError` and the builtin it resembles."""


class BundleError(Exception):
    """Root of the bundle tools' errors."""


class BundleInvalid(BundleError, ValueError):
    """The bundle is malformed: not a tar, a missing or extra member, an unsafe path, a bad manifest."""


class SignatureInvalid(BundleInvalid):
    """The manifest is unsigned, or its signature does not verify with any trusted key."""


class HashMismatch(BundleInvalid):
    """A file's size or sha256 differs from the signed manifest."""


class SigningKeyError(BundleError, OSError):
    """A key file is missing, unreadable, of the wrong type, or would be overwritten."""


class BuildFailed(BundleError, OSError):
    """Building the wheel or the dependency lock failed."""
