"""A time-stamp authority on loopback for the tests: RFC 3161 over HTTP, answering with pyHanko's
own TSA implementation and a TSA certificate (extended key usage timeStamping) from its own
test CA. The fleet's signer talks to it exactly as to a province's TSA."""

from __future__ import annotations

import datetime as dt
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from asn1crypto import keys, tsp, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from fleet.signing.demo import make_ca


class LoopbackTsa:
    """``with LoopbackTsa(folder) as tsa:`` serves at ``tsa.url``; its CA is ``tsa.ca_cert`` (PEM)."""

    def __init__(self, folder: Path) -> None:
        now = dt.datetime.now(dt.UTC)
        ca_key, ca_cert = make_ca(now)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = (cx509.CertificateBuilder()
                .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "Sohoa test TSA")]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(cx509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
                .add_extension(cx509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
                .sign(ca_key, hashes.SHA256()))
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_cert = folder / "tsa-ca.crt"
        self.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.requests = 0
        stamper = DummyTimeStamper(
            tsa_cert=x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
            tsa_key=keys.PrivateKeyInfo.load(key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
            certs_to_embed=SimpleCertificateStore.from_certs(  # type: ignore[no-untyped-call]
                [x509.Certificate.load(ca_cert.public_bytes(serialization.Encoding.DER))]))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/tsr"
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-tsa", daemon=True)

    def __enter__(self) -> LoopbackTsa:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
