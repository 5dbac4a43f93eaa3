"""Prometheus metrics of one fleet process, in their own registry (one per app, so several
apps in one test process do not collide)."""

import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from protocol.errors import RejectReason

REJECT_REASONS: tuple[RejectReason | str, ...] = (
    "too_large",
    "malformed_json",
    "schema_version",
    "invalid",
    "unknown_topic",
    "device_mismatch",
    "store_failed",
)

MAX_UNKNOWN_FIELD_LABELS = 200
"""Distinct (type, field) pairs the unknown-fields counter labels; later ones count as ``_other``
(a device could otherwise invent names without end)."""
OTHER_FIELD = "_other"


class FleetMetrics:
    """What ``/metrics`` shows: messages ingested, rejected by reason, ingest lag, devices online."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.ingested = Counter(
            "sohoa_fleet_messages_ingested",
            "MQTT messages written to the database, by channel",
            ["channel"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "sohoa_fleet_messages_rejected",
            "MQTT messages refused, by reason (the payload is never logged)",
            ["reason"],
            registry=self.registry,
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason=reason)
        self.duplicates = Counter(
            "sohoa_fleet_messages_duplicate", "Events received again and ignored (at-least-once)",
            registry=self.registry,
        )
        self.confirmed = Counter(
            "sohoa_fleet_messages_confirmed", "Message ids confirmed to their devices on `stored` after the commit",
            registry=self.registry,
        )
        self.batches = Counter("sohoa_fleet_ingest_batches", "Transactions committed by ingest", registry=self.registry)
        self.lag = Histogram(
            "sohoa_fleet_ingest_lag_seconds",
            "From the device's timestamp to the database commit, for the oldest message of each batch",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
            registry=self.registry,
        )
        self.last_lag = Gauge(
            "sohoa_fleet_ingest_last_lag_seconds", "Lag of the newest committed message", registry=self.registry
        )
        self.connected = Gauge(
            "sohoa_fleet_ingest_connected", "1 while ingest is connected to the broker", registry=self.registry
        )
        self.devices_online = Gauge(
            "sohoa_fleet_devices_online", "Devices online (status online and heard within the timeout)",
            registry=self.registry,
        )
        self.devices_known = Gauge("sohoa_fleet_devices", "Devices known to the fleet", registry=self.registry)
        self.files_stored = Counter("sohoa_fleet_files_stored", "Page files stored", registry=self.registry)
        self.upload_rejected = Counter(
            "sohoa_fleet_uploads_rejected", "Uploads refused, by reason", ["reason"], registry=self.registry
        )
        self.documents_unsigned = Gauge(
            "sohoa_fleet_documents_unsigned",
            "Closed documents not signed yet (delivery waits for them), after the last signing pass",
            registry=self.registry,
        )
        self.documents_signed = Counter(
            "sohoa_fleet_documents_signed", "Documents signing passes handled, by outcome (signed, failed)",
            ["outcome"], registry=self.registry,
        )
        for outcome in ("signed", "failed"):
            self.documents_signed.labels(outcome=outcome)
        self.unknown_fields = Counter(
            "sohoa_fleet_unknown_fields",
            "Fields ignored in messages that were kept (a newer agent's additive change), by message type "
            f"and field path; past {MAX_UNKNOWN_FIELD_LABELS} pairs the field is {OTHER_FIELD}",
            ["type", "field"],
            registry=self.registry,
        )
        self.deliveries = Gauge(
            "sohoa_fleet_deliveries", "Deliveries of signed documents per target and state (the outbox)",
            ["target", "state"], registry=self.registry,
        )
        self.delivery_attempts = Counter(
            "sohoa_fleet_delivery_attempts", "Delivery attempts per target and outcome (delivered, failed)",
            ["target", "outcome"], registry=self.registry,
        )
        self._unknown_seen: set[tuple[str, str]] = set()
        self._unknown_lock = threading.Lock()

    def count_unknown_fields(self, kind: str, fields: Iterable[str]) -> list[str]:
        """Count the fields a message of ``kind`` carried that this fleet ignored; returns those
        seen for the first time (the caller logs each once), ``_other`` once when the cap is hit.

        >>> metrics = FleetMetrics()
        >>> metrics.count_unknown_fields("telemetry", ["battery_percent"])
        ['battery_percent']
        >>> metrics.count_unknown_fields("telemetry", ["battery_percent"])
        []
        """
        new: list[str] = []
        with self._unknown_lock:
            for field in fields:
                label = field
                if (kind, field) not in self._unknown_seen:
                    if len(self._unknown_seen) >= MAX_UNKNOWN_FIELD_LABELS:
                        label = OTHER_FIELD
                    if (kind, label) not in self._unknown_seen:
                        self._unknown_seen.add((kind, label))
                        new.append(label)
                self.unknown_fields.labels(type=kind, field=label).inc()
        return new
