"""``sohoa-fleet serve`` over HTTPS with a certificate it issues from the fleet CA; the config's
TLS fields checked by ``validate-config``."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.services import free_port, wait_port


def test_serve_issues_its_https_certificate_from_the_ca(tmp_path: Path) -> None:
    """Bad input: a plain-HTTP request to the HTTPS port, and a client that does not trust the
    fleet CA (both fail). A client trusting only the CA gets the CA certificate at /api/v1/pki/ca.crt."""
    port = free_port()
    config = tmp_path / "fleet.yaml"
    config.write_text(f"http:\n  port: {port}\ningest:\n  enabled: false\npki:\n  ca_dir: {tmp_path / 'pki' / 'ca'}\n"
                      f"  crl_file: {tmp_path / 'pki' / 'broker' / 'crl.pem'}\n")
    proc = subprocess.Popen([sys.executable, "-m", "fleet", "serve", "--config", str(config)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(port, timeout=30)
        ca = tmp_path / "pki" / "ca" / "ca.crt"
        assert (tmp_path / "pki" / "api" / "api.crt").is_file() and (tmp_path / "pki" / "broker" / "crl.pem").is_file()
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=str(ca))) as h:
            assert h.get("/api/v1/pki/ca.crt").content == ca.read_bytes()
            assert h.get("/api/v1/devices").status_code == 401
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"https://127.0.0.1:{port}/healthz")  # the system's trust store does not know our CA
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert f"fleet on https://127.0.0.1:{port}" in out and "PRIVATE KEY" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_validate_config_tls_fields(tmp_path: Path) -> None:
    """Bad input: a broker client certificate without its key, a CA-less client certificate, an
    HTTPS key without its certificate, a broker URL that is not mqtts, a CRL refresh longer than
    the CRL's life."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("broker:\n  cert_file: a.crt\n  ca_file: ca.crt\nhttp:\n  tls_key: k.pem\n"
                   "enrollment:\n  broker_url: mqtt://x:1883\npki:\n  crl_refresh_h: 200\n")
    result = subprocess.run([sys.executable, "-m", "fleet", "validate-config", str(bad)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    for needle in ("cert_file and key_file go together", "tls_cert and tls_key go together", "mqtts://",
                   "crl_refresh_h"):
        assert needle in result.stderr, result.stderr
    good = tmp_path / "good.yaml"
    good.write_text("broker:\n  port: 8883\n  cert_file: a.crt\n  key_file: a.key\n  ca_file: ca.crt\n"
                    "pki:\n  ca_dir: /var/lib/sohoa/pki/ca\n")
    result = subprocess.run([sys.executable, "-m", "fleet", "validate-config", str(good)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
