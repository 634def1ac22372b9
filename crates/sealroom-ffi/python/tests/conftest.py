"""Shared fixtures: a development relay (the `sealroom` binary) and ticket minting.

scripts/test.d/30-python sets SEALROOM_BIN (the relay) and SEALROOM_RUST_PEER (the Rust
member, crates/sealroom-ffi/examples/rust_peer.rs) to the debug builds.
"""

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import sealroom

ROOT = Path(__file__).resolve().parents[4]


@dataclass
class Relay:
    address: str
    pin: str
    ticket_secret: bytes

    def ticket(self, user: str, room: str, ttl_secs: int = 600, secret=None, grants=None) -> str:
        return sealroom.mint_ticket(
            app="dev",
            user=user,
            room=room,
            kid="dev",
            secret=secret if secret is not None else self.ticket_secret,
            ttl_secs=ttl_secs,
            grants=grants or all_grants(),
        )


def all_grants() -> sealroom.Grants:
    return sealroom.Grants(publish_audio=True, publish_video=True, publish_data=True, subscribe=True)


def binary(variable: str, default: str) -> str:
    path = os.environ.get(variable) or str(ROOT / default)
    if not Path(path).exists():
        pytest.fail(f"{path} is missing: build it (scripts/test.d/30-python does) or set {variable}")
    return path


@pytest.fixture(scope="session")
def relay():
    """A development relay on loopback ports the kernel picks, for the whole session."""
    process = subprocess.Popen(
        [binary("SEALROOM_BIN", "target/debug/sealroom"), "relay",
         "--listen", "127.0.0.1:0", "--internal-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    banner = []
    address = pin = secret = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (address and pin and secret):
        line = process.stdout.readline()
        if not line:
            break
        banner.append(line)
        if m := re.match(r"\s*listen:\s+(\S+)", line):
            address = m.group(1)
        elif m := re.match(r"\s*cert-sha256:\s+([0-9a-f]{64})", line):
            pin = m.group(1)
        elif m := re.search(r"SEALROOM_TICKET_SECRET=(\S+)", line):
            secret = m.group(1).encode()
    if not (address and pin and secret):
        process.kill()
        pytest.fail("the relay did not print its address, pin and ticket secret:\n" + "".join(banner))
    yield Relay(address=address, pin=pin, ticket_secret=secret)
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
