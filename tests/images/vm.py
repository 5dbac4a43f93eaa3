"""The kiosk's OS image in a QEMU virtual machine, for ``make image-test``.

The VM runs a copy of the image (the built one stays as it was), boots through UEFI (OVMF) and
systemd-boot as a PC or a Pi would through its firmware, and has one network: QEMU's user mode
with ``restrict=on`` (nothing leaves the host) and one ``guestfwd`` per host service, each
connection handed to ``socat`` which connects to 127.0.0.1 only. The guest sees the host's
services at :data:`GUEST_HOST`.

What the test needs that a kiosk does not, it adds to its copy's boot partition (FAT, written
with mtools, no mount): the kernel options for a root shell on the second serial port
(``systemd.debug_shell=ttyS1``), the journal on the first, and a SANE configuration enabling
the ``test`` backend. The kiosk image itself has none of them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GUEST_HOST = "10.0.2.100"
"""Where the guest reaches the host's services (the guestfwd rules)."""
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
SECTOR = 512


class VmError(AssertionError):
    """The VM did not do what the test waited for (with the console's tail)."""


@dataclass(frozen=True)
class Partition:
    offset: int
    size: int


def partitions(disk: Path) -> list[Partition]:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True,
                                      check=True).stdout)
    return [Partition(p["start"] * SECTOR, p["size"] * SECTOR) for p in table["partitiontable"]["partitions"]]


class BootPartition:
    """The FAT boot partition inside a disk image, read and written with mtools (no mount)."""

    def __init__(self, disk: Path) -> None:
        self.image = f"{disk}@@{partitions(disk)[0].offset}"
        self.env = dict(os.environ, MTOOLS_SKIP_CHECK="1")

    def _run(self, *args: str, data: bytes | None = None) -> bytes:
        result = subprocess.run(list(args), input=data, capture_output=True, env=self.env, check=False)
        if result.returncode != 0:
            raise VmError(f"{' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout

    def read(self, path: str) -> bytes:
        return self._run("mtype", "-i", self.image, f"::/{path}")

    def write(self, path: str, data: bytes, tmp: Path) -> None:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            if parts[depth - 1] not in self.listdir("/".join(parts[:depth - 1])):
                self._run("mmd", "-i", self.image, f"::/{'/'.join(parts[:depth])}")
        local = tmp / "mtools-upload"
        local.write_bytes(data)
        self._run("mcopy", "-o", "-i", self.image, str(local), f"::/{path}")

    def listdir(self, path: str = "") -> list[str]:
        try:
            out = self._run("mdir", "-b", "-i", self.image, f"::/{path}")
        except VmError:
            return []
        return [line.rstrip("/").rsplit("/", 1)[-1] for line in out.decode().splitlines() if line.strip()]


def prepare_disk(image: Path, workdir: Path, extra_kernel_options: str) -> Path:
    """A sparse copy of ``image`` whose boot entry has the test's kernel options added."""
    disk = workdir / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    boot = BootPartition(disk)
    entry = "loader/entries/sohoa.conf"
    text = boot.read(entry).decode()
    text = re.sub(r"^options (.*)$", lambda m: f"options {m.group(1).replace(' quiet', '')} {extra_kernel_options}",
                  text, flags=re.M)
    boot.write(entry, text.encode(), workdir)
    return disk


class Vm:
    """One QEMU/KVM machine on ``disk``; :meth:`power_off` is a pulled plug (QEMU killed)."""

    def __init__(self, disk: Path, workdir: Path, forwards: dict[int, int], *, uuid: str,
                 memory_mb: int = 2048) -> None:
        self.disk = disk
        self.workdir = workdir
        self.forwards = forwards
        self.uuid = uuid
        self.memory_mb = memory_mb
        self.console = workdir / "console.log"
        self.shell_socket = workdir / "shell.sock"
        self.vars = workdir / "OVMF_VARS.fd"
        self.proc: subprocess.Popen[bytes] | None = None
        self.boots = 0
        self._console_seen = 0
        self._shell: socket.socket | None = None
        self._shell_lock = threading.Lock()

    @staticmethod
    def accelerator() -> list[str]:
        """KVM where it runs a stock kernel; QEMU's emulation (TCG) under PVM, the nested KVM of
        some cloud machines, which runs only guests built for it (a Debian kernel stops early).

        Without AVX2 under emulation: QEMU 7.2's emulated VPGATHERDD faults on valid addresses,
        and OpenCV's AVX2 code uses it (the agent died of SIGSEGV in cv2 on its first page)."""
        if Path("/sys/module/kvm_pvm").exists() or not Path("/dev/kvm").exists():
            return ["-accel", "tcg", "-cpu", "max,-avx2"]
        return ["-accel", "kvm", "-cpu", "host"]

    def command(self) -> list[str]:
        rules = ",".join(
            f"guestfwd=tcp:{GUEST_HOST}:{guest}-cmd:socat STDIO TCP:127.0.0.1:{host}"
            for guest, host in sorted(self.forwards.items())
        )
        return [
            "qemu-system-x86_64", *self.accelerator(), "-machine", "q35", "-smp", "2",
            "-m", str(self.memory_mb), "-uuid", self.uuid, "-display", "none", "-no-user-config",
            "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,file={self.vars}",
            # writeback: the guest's flushes reach the host file, so killing QEMU is a power cut
            # that loses exactly what the guest had not made durable.
            "-drive", f"file={self.disk},format=raw,if=virtio,cache=writeback,discard=unmap",
            # romfile= : no PXE option ROM, so UEFI does not try the network before the disk.
            "-netdev", f"user,id=n0,restrict=on,{rules}", "-device", "virtio-net-pci,netdev=n0,romfile=",
            "-device", "i6300esb", "-action", "watchdog=reset",
            "-chardev", f"file,id=console,path={self.console},append=on", "-serial", "chardev:console",
            "-chardev", f"socket,id=shell,path={self.shell_socket},server=on,wait=off", "-serial", "chardev:shell",
            "-monitor", "none",
        ]

    def start(self) -> None:
        if not self.vars.exists():
            shutil.copy(OVMF_VARS, self.vars)
        self.boots += 1
        self._console_seen = len(self.console.read_bytes()) if self.console.exists() else 0
        log = (self.workdir / f"qemu-{self.boots}.log").open("wb")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._shell = None

    def power_off(self) -> None:
        """Pull the plug: QEMU is killed, the guest gets no shutdown and no flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        if self._shell is not None:
            self._shell.close()
            self._shell = None

    def close(self) -> None:
        self.power_off()

    # --- the serial console (ttyS0: kernel and journal) -----------------------------------------

    def console_text(self, this_boot: bool = True) -> str:
        data = self.console.read_bytes() if self.console.exists() else b""
        return data[self._console_seen if this_boot else 0:].decode(errors="replace")

    def wait_console(self, pattern: str, timeout: float, *, after: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in this boot's console output past offset ``after``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        stop = threading.Event()
        while True:
            text = self.console_text()
            found = regex.search(text, after)
            if found is not None:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                raise VmError(f"QEMU exited ({self.proc.returncode}) waiting for {pattern!r}:\n{text[-3000:]}")
            if time.monotonic() > deadline:
                raise VmError(f"no {pattern!r} on the console within {timeout:.0f} s:\n{text[-3000:]}")
            stop.wait(0.5)

    # --- the root shell (ttyS1: systemd's debug shell, this test only) -------------------------

    def _connect(self, timeout: float) -> socket.socket:
        if self._shell is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(self.shell_socket))
            sock.settimeout(timeout)
            self._shell = sock
        return self._shell

    def sh(self, command: str, timeout: float = 60) -> tuple[int, str]:
        """Run ``command`` in the guest's root shell: (exit status, output)."""
        with self._shell_lock:
            sock = self._connect(timeout)
            marker = f"m{time.monotonic_ns()}"
            # $((1+1)) is expanded in the output, not in the echo of the typed line: the markers
            # frame the command's output alone (no prompt, no echo, no terminal escapes).
            sock.sendall(f"stty -echo 2>/dev/null; echo B_$((1+1))_{marker}; {command}; echo E_{marker}=$?\n".encode())
            buffer = b""
            regex = re.compile(rf"B_2_{marker}\r?\n(.*?)E_{marker}=(\d+)".encode(), re.S)
            deadline = time.monotonic() + timeout
            while (found := regex.search(buffer)) is None:
                if time.monotonic() > deadline:
                    raise VmError(f"guest shell: no answer to {command!r} in {timeout:.0f} s: {buffer[-2000:]!r}")
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    raise VmError("guest shell closed")
                buffer += chunk
            return int(found.group(2)), found.group(1).decode(errors="replace").replace("\r", "")

    def wait_shell(self, timeout: float) -> None:
        """Until the debug shell answers (it starts early in the boot)."""
        deadline = time.monotonic() + timeout
        stop = threading.Event()
        while True:
            try:
                if self.sh("true", timeout=10)[0] == 0:
                    return
            except (OSError, VmError):
                if self._shell is not None:
                    self._shell.close()
                    self._shell = None
            if time.monotonic() > deadline:
                raise VmError(f"no root shell on ttyS1 within {timeout:.0f} s:\n{self.console_text()[-3000:]}")
            stop.wait(1)
