"""Which Ray cluster the CLI joins: the one `mmats up` started, even when other clusters run beside it.

Ray's ``address="auto"`` joins the most recently started cluster on the machine, which is not the
system's when a test run or a notebook started another one since. ``mmats up`` records its cluster's
address in a per-user file; commands that are not given ``--address`` try it first (when something
still listens there) and fall back to ``auto``.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path


def address_file(namespace: str) -> Path:
    return Path(tempfile.gettempdir()) / f"mmats-{os.getuid()}" / f"{namespace}.ray_address"


def record(namespace: str, address: str) -> Path:
    path = address_file(namespace)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(address)
    return path


def forget(namespace: str, address: str) -> None:
    """Remove the record if it is still ours (another `mmats up` may have replaced it)."""
    path = address_file(namespace)
    try:
        if path.read_text().strip() == address:
            path.unlink()
    except OSError:
        pass


def recorded(namespace: str) -> str | None:
    """The address `mmats up` recorded, if a process still listens there."""
    try:
        address = address_file(namespace).read_text().strip()
        host, _, port = address.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=1.0):
            return address
    except (OSError, ValueError):
        return None
