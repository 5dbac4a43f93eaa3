"""``python -m provisioning``: set up a fleet's PKI and broker configuration in one directory.

    python -m provisioning init /var/lib/sohoa/pki --host broker.sohoa.lan --host 10.0.0.5
    python -m provisioning init .demo/pki --plain-port 1883          # the one-command demo

``init`` is idempotent: it loads the CA if it exists (never replaces its key), and (re)writes the
broker's and the ingest's certificates only when missing, an empty CRL when none exists, and
``mosquitto.conf`` + ``acl`` every time. It prints where everything is, never a key.

Layout::

    <dir>/ca/ca.key (0600)  ca/ca.crt
    <dir>/broker/broker.key (0600)  broker.crt  ca.crt  crl.pem  mosquitto.conf  acl  mosquitto.log  data/
    <dir>/ingest/fleet.ingest.key (0600)  fleet.ingest.crt
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from collections.abc import Sequence
from pathlib import Path

from protocol import __version__
from provisioning.broker import BrokerConfig, write_broker_config
from provisioning.ca import FLEET_INGEST, CertificateAuthority
from provisioning.errors import ProvisioningError
from provisioning.files import write_public


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m provisioning", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create/load the CA, issue broker + ingest certificates, write mosquitto.conf")
    init.add_argument("directory", type=Path)
    init.add_argument("--host", action="append", default=[], help="broker DNS name or IP (repeatable)")
    init.add_argument("--tls-port", type=int, default=8883)
    init.add_argument("--bind", default="0.0.0.0", help="TLS listener address")  # noqa: S104
    init.add_argument("--plain-port", type=int, default=None, help="DEMO ONLY: anonymous plain listener on 127.0.0.1")
    init.add_argument("--crl-url", default=None, help="HTTP URL where the fleet serves the CRL (EMQX needs it)")
    init.add_argument("--ingest", action="append", default=[], help="ingest identity (repeatable; fleet.ingest)")
    init.add_argument("--run-as", default=None,
                      help="mosquitto's 'user' setting; as root without it, the broker files are given to 'mosquitto'")
    init.add_argument("--log-file", type=Path, default=None, help="broker log (default <dir>/broker/mosquitto.log)")
    return p


def _init(args: argparse.Namespace) -> int:
    root: Path = args.directory.resolve()
    ca = CertificateAuthority.open(root / "ca", crl_url=args.crl_url)
    hosts = args.host or ["localhost", "127.0.0.1"]
    broker_dir, ingest_dir = root / "broker", root / "ingest"
    cert, key = broker_dir / "broker.crt", broker_dir / "broker.key"
    if not cert.exists():
        cert, key = ca.issue_server(hosts, broker_dir, name="broker")
    ingests = args.ingest or [FLEET_INGEST]
    for name in ingests:
        if not (ingest_dir / f"{name}.crt").exists():
            ca.issue_service(name, ingest_dir)
    crl = broker_dir / "crl.pem"
    if not crl.exists():
        ca.write_crl(crl, [])
    cafile = broker_dir / "ca.crt"  # a copy: the CA directory is 0700 and the broker may run as another user
    write_public(cafile, ca.certificate_pem)
    cfg = BrokerConfig(tls_port=args.tls_port, tls_bind=args.bind, cafile=cafile, certfile=cert,
                       keyfile=key, crlfile=crl, acl_file=broker_dir / "acl", ingest_identities=ingests,
                       plain_loopback_port=args.plain_port, persistence_dir=broker_dir / "data",
                       run_as_user=args.run_as, log_file=args.log_file or broker_dir / "mosquitto.log")
    conf, acl = write_broker_config(cfg, broker_dir / "mosquitto.conf")
    if os.geteuid() == 0 and args.run_as is None:
        _give_to_broker_user(broker_dir)
    print(f"CA certificate:     {root / 'ca' / 'ca.crt'}  ({ca.subject})")
    print(f"broker config:      {conf}  (mosquitto -c {conf})")
    print(f"broker ACL:         {acl}")
    print(f"CRL:                {crl}  (rewrite at least daily, then SIGHUP mosquitto)")
    for name in ingests:
        print(f"ingest identity:    {ingest_dir / (name + '.crt')}  + .key")
    return 0


def _give_to_broker_user(broker_dir: Path) -> None:
    """mosquitto started as root drops to the 'mosquitto' user before reading its key and CRL."""
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for path in [broker_dir, *broker_dir.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _init(args)
    except (ProvisioningError, OSError, ValueError) as exc:
        print(f"provisioning: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
