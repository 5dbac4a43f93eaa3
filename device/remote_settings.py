"""Remote settings on the device: what the fleet set, checked, applied, kept and reported.

The fleet publishes a retained :class:`~protocol.messages.ConfigDesired` (its settings already
merged from fleet, unit and device levels). :class:`SettingsStore` validates it against
:class:`protocol.settings.RemoteSettings` (the contract: which keys exist), hands the new
settings to the agent's ``apply`` callable, and only when that succeeded writes them to disk
(atomically, fsynced) as the last good settings. Anything invalid is rejected with the reason,
and the device keeps running what it ran::

    store = SettingsStore(state_dir / "settings.json", device_id="kiosk-0001", apply=applier.apply)
    reported = store.handle(desired)          # a ConfigReported, to publish on config/reported
    store.current.maintenance_window.is_open(now)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from device.capture.config import SaneScannerConfig
from device.config import AgentConfig
from device.durable import atomic_write
from device.errors import SohoaError
from protocol.messages import ConfigDesired, ConfigReported
from protocol.settings import RemoteSettings

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 1000


class SettingsRejected(SohoaError, ValueError):
    """Desired settings that do not validate or that the agent could not apply."""


def agent_config_overrides(settings: RemoteSettings) -> dict[str, Any]:
    """The parts of the agent's ``AgentConfig`` (device/config.py) these settings decide, shaped
    for a deep merge into ``config.model_dump()``: scanner resolution and colour mode, telemetry
    interval. Quality, classifier, language and window are read from the settings themselves.

    >>> agent_config_overrides(RemoteSettings())["scanner"]
    {'dpi': 300, 'mode': 'color'}
    """
    return {
        "scanner": {"dpi": settings.scan.dpi, "mode": settings.scan.colour_mode},
        "telemetry": {"interval_s": settings.telemetry_interval_s},
    }


def describe_errors(exc: ValidationError) -> str:
    """One line per error, 'key.path: message' (pydantic's message, not the whole input; the
    settings hold no personal data)."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(settings)"
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)[:MAX_ERROR_CHARS]


ApplyFn = Callable[[RemoteSettings], None]
"""The agent's hook: make the running agent use these settings, or raise to refuse them."""


class SettingsStore:
    """The device's settings: the last good ones on disk, desired ones checked and applied.

    ``available_models`` (optional) lists installed classifier model versions, so a desired
    model that is not on the device is rejected instead of breaking classification.
    """

    def __init__(
        self,
        path: Path,
        *,
        device_id: str,
        apply: ApplyFn | None = None,
        available_models: Callable[[], set[str]] | None = None,
    ) -> None:
        self.path = path
        self.device_id = device_id
        self._apply = apply
        self._available_models = available_models
        self.version: int | None = None
        self.current = RemoteSettings()
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
            self.current = RemoteSettings.model_validate(raw["settings"])
            self.version = int(raw["version"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
            # The file is written atomically, so this is damage from outside: run defaults.
            log.warning("settings file %s unreadable (%s): running defaults", self.path, type(exc).__name__)

    def validate(self, settings: dict[str, Any]) -> RemoteSettings:
        """Parse desired settings; raise :class:`SettingsRejected` with every reason."""
        try:
            parsed = RemoteSettings.model_validate(settings)
        except ValidationError as exc:
            raise SettingsRejected(describe_errors(exc)) from None
        wanted = parsed.classifier.model_version
        if wanted is not None and self._available_models is not None:
            installed = self._available_models()
            if wanted not in installed:
                raise SettingsRejected(
                    f"classifier.model_version: {wanted!r} is not installed (installed: {sorted(installed)})"[
                        :MAX_ERROR_CHARS
                    ]
                )
        return parsed

    def reported(self, version: int, *, error: str | None = None) -> ConfigReported:
        return ConfigReported(
            device_id=self.device_id,
            version=version,
            applied=error is None,
            error=error,
            settings=self.current.model_dump(mode="json"),
        )

    def handle(self, desired: ConfigDesired) -> ConfigReported:
        """Validate and apply desired settings; the answer to publish on ``config/reported``.

        Idempotent: the same or an older version (a retained message delivered again) is not
        applied again; the answer says what the device runs.
        """
        if self.version is not None and desired.version <= self.version:
            log.info("desired settings v%s not newer than v%s: not applied again", desired.version, self.version)
            return self.reported(self.version)
        try:
            parsed = self.validate(desired.settings)
        except SettingsRejected as exc:
            log.warning("desired settings v%s rejected: %s", desired.version, exc)
            return self.reported(desired.version, error=str(exc))
        previous = self.current
        if self._apply is not None:
            try:
                self._apply(parsed)
            except Exception as exc:  # the agent's hook refused: go back to what worked
                log.warning("applying settings v%s failed (%s): restoring the previous", desired.version, exc)
                try:
                    self._apply(previous)
                except Exception:
                    log.exception("restoring the previous settings failed")
                return self.reported(desired.version, error=f"not applied: {str(exc)[:900]}")
        payload = {"version": desired.version, "settings": parsed.model_dump(mode="json")}
        atomic_write(self.path, json.dumps(payload, indent=2).encode())
        self.current, self.version = parsed, desired.version
        log.info("settings v%s applied", desired.version)
        return self.reported(desired.version)


class RemoteSettingsApplier:
    """The agent's side of remote settings: the local config file's values with the keys the
    fleet set over them, used at once; a key the fleet did not set (or no longer sets) keeps the
    local value, so a fleet with no settings changes nothing.

    Which keys the fleet set is kept beside the settings (``settings_given.json``, written through
    :func:`device.durable.atomic_write`) so that it survives restarts. ``use`` takes each new
    config (the agent's composition root applies it to its parts).

    >>> applier = RemoteSettingsApplier(config, use=agent.use_config)  # doctest: +SKIP
    >>> reported = applier.handle(desired)  # a ConfigReported to publish  # doctest: +SKIP
    """

    def __init__(
        self,
        local: AgentConfig,
        *,
        use: Callable[[AgentConfig], None],
        installed_models: Callable[[], set[str]] = set,
    ) -> None:
        self.local = local
        self.config = local
        self._use = use
        self._given_path = local.state_dir / "settings_given.json"
        self.store = SettingsStore(local.state_dir / "settings.json", device_id=local.device_id,
                                   apply=self.apply, available_models=installed_models)
        self._restore_given()

    @property
    def version(self) -> int | None:
        return self.store.version

    @property
    def current(self) -> RemoteSettings:
        return self.store.current

    def apply_stored(self) -> None:
        """At start: the last good settings the fleet set (defaults until it sets any)."""
        if self.store.version is None:
            return
        try:
            self.apply(self.store.current)
        except Exception as exc:  # e.g. the local config changed under them: local wins
            log.error("stored settings v%s no longer apply (%s); running the local config", self.store.version, exc)

    def handle(self, desired: ConfigDesired) -> ConfigReported:
        """Validate, apply and keep desired settings; what to report on ``config/reported``
        (keys the fleet left unset show the running local value)."""
        before = self.store.version
        reported = self.store.handle(desired)
        if reported.error is None and self.store.version != before:
            atomic_write(self._given_path, json.dumps(desired.settings).encode())
        return reported.model_copy(update={"settings": self._running(reported.settings)})

    def _restore_given(self) -> None:
        """Mark, in the stored settings, which keys the fleet set (see :meth:`apply`)."""
        if self.store.version is None or not self._given_path.exists():
            return
        try:
            given = RemoteSettings.model_validate(json.loads(self._given_path.read_text()))
        except (OSError, ValueError):
            log.warning("%s unreadable: every stored setting counts as set by the fleet", self._given_path.name)
            return
        if given == self.store.current:
            self.store.current = given

    def apply(self, settings: RemoteSettings) -> None:
        """The settings store's hook: raises ValidationError to refuse the settings."""
        given = _explicit(settings)
        base = self.local
        overrides: dict[str, Any] = {}
        scan = given.get("scan", {})
        if base.scanner is not None and scan:
            scanner: dict[str, Any] = {}
            if "dpi" in scan:
                scanner["dpi"] = scan["dpi"]
            if "colour_mode" in scan and isinstance(base.scanner, SaneScannerConfig):
                scanner["mode"] = scan["colour_mode"]
            overrides["scanner"] = scanner
        if "telemetry_interval_s" in given:
            overrides["telemetry"] = {"interval_s": settings.telemetry_interval_s}
        if "kiosk_language" in given:
            overrides["kiosk"] = {"language": settings.kiosk_language}
        if given.get("quality"):
            overrides["pipeline"] = {"quality": settings.quality.overrides()}
        if "min_confidence" in given.get("classifier", {}):
            # The running classifier keeps its threshold; the config (next start) takes the new one.
            overrides["doctype"] = {"min_confidence": settings.classifier.min_confidence}
        self.config = AgentConfig.model_validate(_deep_merge(base.model_dump(mode="python"), overrides))
        self._use(self.config)

    def _running(self, reported: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        out = _deep_merge(reported, {"telemetry_interval_s": cfg.telemetry.interval_s,
                                     "kiosk_language": cfg.kiosk.language})
        if cfg.scanner is not None:
            scan: dict[str, Any] = {"dpi": cfg.scanner.dpi}
            if isinstance(cfg.scanner, SaneScannerConfig):
                scan["colour_mode"] = cfg.scanner.mode
            out = _deep_merge(out, {"scan": scan})
        return out


def _explicit(model: BaseModel) -> dict[str, Any]:
    """The fields given when the model was made (nested), not those left at their defaults."""
    out: dict[str, Any] = {}
    for name in model.model_fields_set:
        value = getattr(model, name)
        out[name] = _explicit(value) if isinstance(value, BaseModel) else value
    return out


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
