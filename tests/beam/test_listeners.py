"""A local run listens on loopback only: Beam 2.77's local runner binds its gRPC servers
to `[::]:0` (every interface, unauthenticated); imgtool binds them to 127.0.0.1. The test
reads /proc/net/tcp and /proc/net/tcp6 while a run is going and fails if any socket of the
running process listens on an address other than loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.beam

LISTEN = "0A"


def _inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _addr(hexaddr: str) -> str:
    """/proc/net/tcp{,6}'s hex local address as text (the words are host byte order)."""
    import ipaddress
    import socket
    import struct

    ip, port = hexaddr.split(":")
    raw = b"".join(struct.pack("=I", int(ip[i : i + 8], 16)) for i in range(0, len(ip), 8))
    ip = ipaddress.ip_address(socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw))
    mapped = getattr(ip, "ipv4_mapped", None)  # a dual-stack socket bound to 127.0.0.1 shows as ::ffff:127.0.0.1
    return f"{mapped or ip}:{int(port, 16)}"


def listeners(pid: int) -> list[str]:
    """Addresses the process `pid` listens on (TCP, v4 and v6)."""
    mine = _inodes(pid)
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == LISTEN and f[9] in mine:
                found.append(_addr(f[1]))
    return found


def _loopback(addr: str) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(addr.rsplit(":", 1)[0])
    return ip.is_loopback or (getattr(ip, "ipv4_mapped", None) is not None and ip.ipv4_mapped.is_loopback)


def test_address_decoding() -> None:
    assert _addr("0100007F:1F90") == "127.0.0.1:8080"
    assert _addr("00000000000000000000000000000000:0050") == ":::80"
    assert _addr("0000000000000000FFFF00000100007F:B62E") == "127.0.0.1:46638"
    assert not _loopback(":::80") and _loopback("127.0.0.1:1") and _loopback("::1:5")


@pytest.mark.parametrize("mode", ["multi_threading", "multi_processing"])
def test_a_local_run_listens_on_loopback_only(mode: str, mobilenet: str, flowers: Path, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    for i in range(2):  # 500 photos (hard links): the run lasts long enough to look at it
        for f in flowers.rglob("*.jpg"):
            os.link(f, big / f"{i}-{f.parent.name}-{f.name}")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imgtool.beam",
            "classify",
            "-m",
            mobilenet,
            "-i",
            str(big),
            "-o",
            str(tmp_path / "out" / "x"),
            "--",
            "--direct_num_workers=2",
            f"--direct_running_mode={mode}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[str] = set()
    looks = 0
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                now = listeners(proc.pid)
            except (FileNotFoundError, ProcessLookupError):
                break
            seen.update(now)
            looks += bool(now)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert looks >= 3, "never saw the runner's servers: the run ended too soon to check"
    assert len(seen) >= 4  # control, data, state, logging
    wide = sorted(a for a in seen if not _loopback(a))
    assert not wide, f"listening beyond loopback during a local run: {wide}"
