"""Where the updater keeps its slots and how patient it is (the ``updater:`` section of the
device's config), apart from the updater: reading a config file imports no HTTP client.

>>> UpdaterConfig(public_keys=[]).max_trial_boots
3
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class UpdaterConfig(BaseModel):
    """Where the slots live and how patient the updater is."""

    model_config = ConfigDict(extra="forbid")
    root: Path = Field(default=Path("/opt/sohoa"), description="Slots, the current symlink and downloads live here")
    public_keys: list[Path] = Field(
        description="Ed25519 public keys (PEM) whose signatures are trusted; two during a key rotation"
    )
    jitter_max_s: float = Field(
        default=900, ge=0, description="Random wait before starting, so a fleet does not download at once"
    )
    download_attempts: int = Field(default=8, ge=1, description="Tries, each resuming where the last one stopped")
    download_timeout_s: float = Field(default=30, gt=0, description="HTTP timeout without bytes")
    retry_min_s: float = Field(default=2, ge=0, description="First wait after a failed download attempt")
    retry_max_s: float = Field(default=120, ge=0, description="Longest wait between download attempts")
    health_timeout_s: float = Field(default=180, gt=0, description="Time the new slot has to pass every check")
    health_interval_s: float = Field(default=2, gt=0, description="Pause between tries of a failing check")
    max_trial_boots: int = Field(
        default=3, ge=1, description="Agent starts on a trial slot before it is rolled back without a check"
    )
    lock_check: Literal["off", "warn", "strict"] = Field(
        default="warn",
        description="Compare the bundle's dependency lock with what is installed: strict refuses a mismatch",
    )
    python: str = Field(default=sys.executable, description="Interpreter whose pip installs the wheels")
    max_bundle_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1024,
        description="A download larger than this is abandoned, announced sha256 or not (the fleet's own limit)")
    allow_http: bool = Field(
        default=False,
        description="DEVELOPMENT ONLY: accept http:// offers (still only from the fleet's own host)")
