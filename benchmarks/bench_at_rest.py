"""What encrypting the device's outbox at rest costs per page: storing a page (write, fsync,
rename, commit) and reading it back to send it, plaintext and sealed side by side, interleaved,
in one run on this machine; also the AES-GCM sealing alone.

Sizes: a 200 dpi A4 JPEG page (about 0.6 MB) and a dossier PDF (about 5 MB). The bytes are
random (incompressible, as JPEG is), so the figures do not flatter either side.

    nice -n 19 python -m benchmarks.bench_at_rest [--repeat 30]
"""

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import machine
from device.delivery.outbox import Outbox
from device.delivery.sealing import FileKey, Sealer

SIZES = {"page 0.6 MB": 600_000, "PDF 5 MB": 5_000_000}
TOPIC = "sohoa/v1/kiosk-bench/event"


def _message(message_id: str) -> Callable[[str], tuple[str, bytes, str]]:
    return lambda _sha: (TOPIC, b"{}", message_id)


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def run(repeat: int) -> list[str]:
    lines = [f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at start; repeat {repeat}"]
    with tempfile.TemporaryDirectory(prefix="bench-at-rest-", dir=Path.home()) as tmp:
        root = Path(tmp)
        plain = Outbox(root / "plain")
        sealed = Outbox(root / "sealed",
                        sealer=Sealer.for_outbox(root / "sealed", "kiosk-bench", FileKey(root / "kek")))
        assert sealed.sealer is not None
        try:
            for label, size in SIZES.items():
                store: dict[str, list[float]] = {"plain": [], "sealed": []}
                read: dict[str, list[float]] = {"plain": [], "sealed": []}
                seal_only: list[float] = []
                open_only: list[float] = []
                for i in range(repeat + 2):
                    data = os.urandom(size)
                    for name, box in (("plain", plain), ("sealed", sealed)) if i % 2 else (
                            ("sealed", sealed), ("plain", plain)):
                        start = time.perf_counter()
                        sha = box.add_page(data, "image/jpeg", _message(f"m-{i}-{size}"))
                        stored = time.perf_counter()
                        assert box.read_file(sha) == data
                        done = time.perf_counter()
                        if i >= 2:  # two warm-up rounds
                            store[name].append((stored - start) * 1000)
                            read[name].append((done - stored) * 1000)
                        box.file_delivered(sha)
                    start = time.perf_counter()
                    blob = sealed.sealer.seal(sha, data)
                    mid = time.perf_counter()
                    sealed.sealer.open(sha, blob)
                    end = time.perf_counter()
                    if i >= 2:
                        seal_only.append((mid - start) * 1000)
                        open_only.append((end - mid) * 1000)
                for what, samples in (("store (write+fsync+commit)", store), ("read back to send", read)):
                    p, s = _median(samples["plain"]), _median(samples["sealed"])
                    lines.append(f"{label}, {what}: plaintext median {p:.2f} ms, sealed {s:.2f} ms, "
                                 f"ratio {s / p:.2f}")
                lines.append(f"{label}, AES-256-GCM alone: seal median {_median(seal_only):.2f} ms, "
                             f"open {_median(open_only):.2f} ms")
        finally:
            plain.close()
            sealed.close()
    lines.append(f"load average {os.getloadavg()[0]:.1f} at the end")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30, help="measured pages per size and side")
    args = parser.parse_args(argv)
    for line in run(args.repeat):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
