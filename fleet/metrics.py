"""Prometheus metrics of one fleet process, in their own registry (one per app, so several
apps in one test process do not collide)."""

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
