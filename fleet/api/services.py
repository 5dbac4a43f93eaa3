"""The fleet's background services, started and stopped in one place: the app's lifespan
(:func:`fleet.api.app.create_app`). Each service is its own object with its own start and
stop, so a test can run one alone; this module only decides which run and in what order.

Start order (stop is the exact reverse, after the last request was answered):

0. job leases (:class:`fleet.leases.LeaseKeeper`): with several fleet nodes on one database, each
   background job below (CRL timer, operations driver, alert evaluation, retention, broker-log
   audit, document signing) runs only on the node holding its lease; one round is taken before anything starts, and
   the leases are released last, after the jobs stopped;
1. enrollment (``pki.ca_dir`` set): the CA is loaded, the CRL written at once and then kept
   fresh by :class:`fleet.enroll.crl_refresh.CrlRefresh` (first: a CRL that lapsed while the
   fleet was down locks every device out of the broker);
2. operations (:class:`fleet.operations.service.Operations`): publishes desired settings and
   commands and drives rollouts. Hooked into the ingest writer before the ingest starts, so no
   acknowledgement that arrives at start is missed; its thread and MQTT client run only with
   the ingest (without it no acknowledgement could ever come back);
3. MQTT ingest (:class:`fleet.ingest.Ingest`, ``ingest.enabled``). Stopped before operations:
   its last batch is written and acknowledged (calling the operations hook) first;
4. alert evaluator (:class:`fleet.alerts.evaluator.AlertEvaluator`, its thread with
   ``alerts.enabled``; always there for "evaluate now");
5. retention (:class:`fleet.retention.RetentionRunner`: old telemetry, and the files of
   documents every target acknowledged long enough ago; its thread with ``retention.enabled``;
   always there for a pass on demand);
6. broker-log audit (:class:`fleet.enroll.brokerlog.BrokerLogAudit`, ``pki.broker_log_file``);
7. document signing (:class:`fleet.signing.job.SigningJob`, ``signing.enabled``): signs each
   closed document the store holds; the token is opened on its first pass, in its own thread,
   so a missing HSM is a logged error and a ``signing_error`` on the documents, not a fleet
   that does not start;
8. delivery of signed documents (:class:`fleet.delivery.worker.DeliveryWorker`, its thread with
   ``delivery.enabled`` and at least one target; always there for the page's counts and a pass
   on demand). Stopped first: a send under way finishes or is left to its lease.

The database is migrated before any of them and closed after all of them (the app's lifespan).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from fleet.alerts.evaluator import AlertEvaluator
from fleet.config import FleetConfig
from fleet.delivery.worker import DeliveryWorker
from fleet.enroll.brokerlog import BrokerLogAudit
from fleet.enroll.crl_refresh import CrlRefresh
from fleet.enroll.runtime import EnrollRuntime, open_runtime
from fleet.ingest import Ingest
from fleet.leases import LeaseKeeper
from fleet.metrics import FleetMetrics
from fleet.operations.service import Operations
from fleet.retention import RetentionRunner
from fleet.signing.job import SigningJob, SigningPass
from fleet.signing.signer import Signer
from fleet.storage import open_storage

log = logging.getLogger(__name__)

JOBS = ("crl_refresh", "operations", "alerts", "retention", "broker_log", "signing")
"""The background jobs that run on one fleet node at a time, by lease name."""


@dataclass
class FleetServices:
    """What runs in the background while the app is open; every field is None before
    :meth:`start` and after :meth:`stop` (and the optional ones when not configured).

    >>> import asyncio
    >>> from fleet.config import DatabaseConfig, IngestConfig
    >>> from fleet.db import make_engine, migrate, session_factory
    >>> from fleet.metrics import FleetMetrics
    >>> engine = make_engine("sqlite://"); migrate(engine)
    >>> config = FleetConfig(database=DatabaseConfig(url="sqlite://"), ingest=IngestConfig(enabled=False))
    >>> services = FleetServices()
    >>> async def run() -> tuple[bool, bool]:
    ...     await services.start(config, session_factory(engine), FleetMetrics(), clock=lambda: datetime(2026, 1, 1))
    ...     running = services.alerts is not None and services.ingest is None
    ...     await services.stop()
    ...     return running, services.alerts is None
    >>> asyncio.run(run())
    (True, True)
    """

    leases: LeaseKeeper | None = None
    enroll: EnrollRuntime | None = None
    crl_refresh: CrlRefresh | None = None
    operations: Operations | None = None
    ingest: Ingest | None = None
    alerts: AlertEvaluator | None = None
    retention: RetentionRunner | None = None
    broker_log: BrokerLogAudit | None = None
    signing: SigningJob | None = None
    delivery: DeliveryWorker | None = None

    async def start(self, config: FleetConfig, sessions: sessionmaker[Session], metrics: FleetMetrics, *,
                    clock: Callable[[], datetime]) -> None:
        """Start every configured service in the order of this module's docstring; on a failure
        stop what already started and raise."""
        try:
            await self._start(config, sessions, metrics, clock)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, config: FleetConfig, sessions: sessionmaker[Session], metrics: FleetMetrics,
                     clock: Callable[[], datetime]) -> None:
        self.leases = LeaseKeeper(sessions, node=config.cluster.node_id, ttl_s=config.cluster.lease_ttl_s)
        leases = self.leases
        for job in JOBS:
            leases.lease(job)
        await run_in_threadpool(leases.start)

        self.enroll = await run_in_threadpool(open_runtime, config, sessions, clock)
        if self.enroll is not None:
            self.crl_refresh = CrlRefresh(self.enroll, sessions, config.pki.crl_refresh_h * 3600, clock)
            self.crl_refresh.lease = leases.lease("crl_refresh")
            await self.crl_refresh.start()

        self.operations = Operations(config, sessions, clock=clock)
        self.operations.lease = leases.lease("operations")
        if config.ingest.enabled:
            self.ingest = Ingest(config, sessions, metrics)
            self.ingest.writer.hooks.append(self.operations.hook)
            self.operations.start()
            self.ingest.start()

        self.alerts = AlertEvaluator(config.alerts, sessions, clock=clock,
                                     heartbeat_timeout_s=config.ingest.heartbeat_timeout_s, delivery=config.delivery,
                                     time_zone=config.time_zone)
        self.alerts.lease = leases.lease("alerts")
        if config.alerts.enabled:
            self.alerts.start()

        store = open_storage(config.storage)
        self.retention = RetentionRunner(config.retention, sessions, clock=clock, store=store,
                                         delivery=config.delivery)
        self.retention.lease = leases.lease("retention")
        if config.retention.enabled:
            self.retention.start()

        if config.pki.broker_log_file is not None:
            self.broker_log = BrokerLogAudit(config.pki.broker_log_file, sessions, config.pki.broker_log_scan_s,
                                             clock=clock)
            self.broker_log.lease = leases.lease("broker_log")
            self.broker_log.start()

        if config.signing.enabled:
            def counted(done: SigningPass, backlog: int) -> None:
                metrics.documents_signed.labels(outcome="signed").inc(done.signed)
                metrics.documents_signed.labels(outcome="failed").inc(done.failed)
                metrics.documents_unsigned.set(backlog)
                if done.signed:
                    self.wake_delivery()  # newly signed documents are ready for delivery

            self.signing = SigningJob(Signer(config.signing), sessions, store, interval_s=config.signing.interval_s,
                                      clock=clock, on_pass=counted)
            self.signing.lease = leases.lease("signing")
            self.signing.start()

        self.delivery = DeliveryWorker(config.delivery, sessions, store, metrics=metrics, clock=clock)
        if config.delivery.enabled and config.delivery.targets:
            self.delivery.start()

    def wake_delivery(self) -> None:
        """Have the delivery worker run a pass now (an admin's retry; new signed documents)."""
        if self.delivery is not None:
            self.delivery.wake()

    def wake_operations(self) -> None:
        """Have the operations driver publish what a request just wrote (when the app runs)."""
        if self.operations is not None:
            self.operations.wake()

    def wake_signing(self) -> None:
        """Have the signing job look for new documents now (a document's file just arrived)."""
        if self.signing is not None:
            self.signing.wake()

    async def stop(self) -> None:
        """Stop what runs, in the reverse order; safe to call twice."""
        if self.delivery is not None:
            await run_in_threadpool(self.delivery.close)
            self.delivery = None
        if self.signing is not None:
            await run_in_threadpool(self.signing.close)
            self.signing = None
        if self.broker_log is not None:
            await self.broker_log.stop()
            self.broker_log = None
        if self.retention is not None:
            await run_in_threadpool(self.retention.close)
            self.retention = None
        if self.alerts is not None:
            await run_in_threadpool(self.alerts.close)
            self.alerts = None
        if self.ingest is not None:
            await run_in_threadpool(self.ingest.stop)
            self.ingest = None
            if self.operations is not None:
                await run_in_threadpool(self.operations.stop)
        self.operations = None
        if self.crl_refresh is not None:
            await self.crl_refresh.stop()
            self.crl_refresh = None
        self.enroll = None
        if self.leases is not None:
            await run_in_threadpool(self.leases.stop)
            self.leases = None
