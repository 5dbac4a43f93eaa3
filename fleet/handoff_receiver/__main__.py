"""``python -m fleet.handoff_receiver``: run the reference receiver until SIGTERM or Ctrl-C.

    python -m fleet.handoff_receiver --dir var/demo/handoff --port 8090
    python -m fleet.handoff_receiver --dir /tmp/r --fault 5xx --fault cut --fault-rate 0.3 --seed 7
    python -m fleet.handoff_receiver --dir /tmp/r --tls-cert s.crt --tls-key s.key --client-ca ca.crt   # mutual TLS
    python -m fleet.handoff_receiver --dir /tmp/r --oauth-client fleet:/run/secrets/fleet.secret          # OAuth2
"""

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from fleet import __version__
from fleet.handoff_receiver.server import FAULTS, Auth, Faults, Receiver, ReceiverServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fleet.handoff_receiver",
                                     description="The reference receiver of Sohoa's hand-off contract.")
    parser.add_argument("--version", action="version", version=f"handoff-receiver {__version__}")
    parser.add_argument("--dir", type=Path, required=True, help="where filed documents and manifests go")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--fault", action="append", choices=FAULTS, default=[], help="a fault to inject (repeat)")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that get a fault (0-1)")
    parser.add_argument("--fault-delay", type=float, default=2.0, help="seconds a 'timeout' fault holds the answer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tls-cert", type=Path, help="HTTPS certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="its key (PEM)")
    parser.add_argument("--client-ca", type=Path, help="require client certificates from this CA (mutual TLS)")
    parser.add_argument("--oauth-client", action="append", default=[], metavar="ID:SECRET_FILE",
                        help="accept this OAuth2 client (client credentials); then every upload needs a token")
    parser.add_argument("--no-fsync", action="store_true", help="do not fsync (benchmarks on a throwaway dir)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (args.tls_cert is None) != (args.tls_key is None) or (args.client_ca is not None and args.tls_cert is None):
        print("handoff-receiver: --tls-cert and --tls-key go together, and --client-ca needs them", file=sys.stderr)
        return 2
    clients: dict[str, str] = {}
    try:
        for entry in args.oauth_client:
            client_id, _, secret_file = entry.partition(":")
            clients[client_id] = Path(secret_file).read_text(encoding="utf-8").strip()
        faults = Faults(kinds=tuple(args.fault), rate=args.fault_rate, delay_s=args.fault_delay, seed=args.seed)
        receiver = Receiver(args.dir, faults=faults, fsync=not args.no_fsync)
        server = ReceiverServer(receiver, args.host, args.port, auth=Auth(oauth_clients=clients),
                                tls=(args.tls_cert, args.tls_key) if args.tls_cert else None,
                                client_ca=args.client_ca)
    except (OSError, ValueError) as exc:
        print(f"handoff-receiver: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    with server:
        print(f"handoff receiver on {server.url}, filing into {args.dir}", flush=True)
        stop.wait()
    print(f"handoff receiver stopped: {len(receiver.filed)} documents filed, {len(receiver.acknowledged)} "
          f"acknowledged", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
