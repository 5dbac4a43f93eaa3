"""The API's HTTPS certificate, issued from the fleet CA when the config names none.

>>> from fleet.config import FleetConfig
>>> api_hosts(FleetConfig.model_validate({"http": {"host": "0.0.0.0"},
...                                       "enrollment": {"public_url": "https://fleet.example.vn"}}))
['fleet.example.vn', 'localhost', '127.0.0.1']
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from fleet.config import FleetConfig
from fleet.enroll.runtime import CA_PASSPHRASE_FILE, public_url
from provisioning.ca import CertificateAuthority

log = logging.getLogger(__name__)

RENEW_BEFORE = dt.timedelta(days=30)
NAME = "api"


def api_hosts(config: FleetConfig) -> list[str]:
    """Names the certificate must cover: the public URL's host, the listening address, loopback."""
    hosts = [urlsplit(public_url(config)).hostname or "", config.http.host, "localhost", "127.0.0.1"]
    out: list[str] = []
    for host in hosts:
        if host and host not in ("0.0.0.0", "::") and host not in out:  # noqa: S104 - filtered out, not bound
            out.append(host)
    return out


def _covers(cert: x509.Certificate, hosts: list[str], now: dt.datetime) -> bool:
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    names = {str(v) for v in san.get_values_for_type(x509.DNSName)}
    names |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    return set(hosts) <= names


def https_files(config: FleetConfig, *, now: dt.datetime | None = None) -> tuple[Path, Path] | None:
    """(certificate, key) for uvicorn: ``http.tls_cert``/``tls_key``, else one issued from the CA
    (re-issued when missing, expiring within 30 days or not covering :func:`api_hosts`), else
    None (plain HTTP: no PKI configured)."""
    if config.http.tls_cert is not None and config.http.tls_key is not None:
        return config.http.tls_cert, config.http.tls_key
    pki = config.pki
    if pki.ca_dir is None:
        return None
    directory = pki.server_cert_dir or pki.ca_dir.parent / NAME
    cert_path, key_path = directory / f"{NAME}.crt", directory / f"{NAME}.key"
    hosts = api_hosts(config)
    moment = now or dt.datetime.now(dt.UTC)
    held = cert_path.exists() and key_path.exists()
    if held and _covers(x509.load_pem_x509_certificate(cert_path.read_bytes()), hosts, moment):
        return cert_path, key_path
    ca = CertificateAuthority.open(pki.ca_dir, passphrase=pki.secret(CA_PASSPHRASE_FILE), crl_url=pki.crl_url)
    directory.mkdir(parents=True, exist_ok=True)
    issued = ca.issue_server(hosts, directory, name=NAME, now=moment)
    log.info("issued the API's HTTPS certificate for %s from the fleet CA", ", ".join(hosts))
    return issued
