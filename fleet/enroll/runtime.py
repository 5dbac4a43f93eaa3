"""What enrollment holds while the app runs: the CA, the store, the service, the request
verifier, the CRL publisher and the rate limiter. Opened by the fleet's services when
``pki.ca_dir`` is set (:class:`fleet.api.services.FleetServices`).

>>> from fleet.config import FleetConfig
>>> broker_url(FleetConfig()), public_url(FleetConfig())
('mqtts://127.0.0.1:8883', 'https://127.0.0.1:8000')
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from fleet.config import FleetConfig
from fleet.enroll.crl import CrlPublisher
from fleet.enroll.nonces import SqlNonces
from fleet.enroll.ratelimit import RateLimiter
from fleet.enroll.store import SqlEnrollmentStore
from provisioning.ca import CertificateAuthority
from provisioning.enrollment import EnrollmentService
from provisioning.requestauth import RequestVerifier

log = logging.getLogger(__name__)

CA_PASSPHRASE_FILE = "ca_passphrase"  # noqa: S105 - a file name, not a secret
TOKEN_PEPPER_FILE = "token_pepper"  # noqa: S105 - a file name, not a secret


def broker_url(config: FleetConfig) -> str:
    """What an enrolled device is told to connect to."""
    return config.enrollment.broker_url or f"mqtts://{config.broker.host}:8883"


def public_url(config: FleetConfig) -> str:
    """This API's address as devices reach it."""
    return config.enrollment.public_url or f"https://{config.http.host}:{config.http.port}"


@dataclass
class EnrollRuntime:
    ca: CertificateAuthority
    store: SqlEnrollmentStore
    service: EnrollmentService
    verifier: RequestVerifier
    crl: CrlPublisher
    limiter: RateLimiter
    pepper: bytes | None


def open_runtime(config: FleetConfig, sessions: sessionmaker[Session],
                 clock: Callable[[], datetime]) -> EnrollRuntime | None:
    """Load (or, on a first start, create) the CA; None when ``pki.ca_dir`` is unset."""
    pki = config.pki
    if pki.ca_dir is None:
        return None
    ca = CertificateAuthority.open(pki.ca_dir, passphrase=pki.secret(CA_PASSPHRASE_FILE), crl_url=pki.crl_url)
    pepper = pki.secret(TOKEN_PEPPER_FILE)
    store = SqlEnrollmentStore(sessions, clock)
    service = EnrollmentService(ca, store, broker_url=broker_url(config), fleet_url=public_url(config), pepper=pepper)
    crl = CrlPublisher(ca, store, crl_file=pki.crl_file, broker_pid_file=pki.broker_pid_file, clock=clock)
    log.info("enrollment on: CA %s, devices told broker %s and fleet %s", ca.subject, broker_url(config),
             public_url(config))
    return EnrollRuntime(ca, store, service, RequestVerifier(ca, nonces=SqlNonces(sessions)), crl,
                         RateLimiter(config.enrollment.rate_per_minute), pepper)
