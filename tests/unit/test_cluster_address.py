"""The CLI joins the cluster `mmats up` recorded while something listens there, else Ray's ``auto``."""

from __future__ import annotations

import socket
import uuid

from control.cluster_address import address_file, forget, record, recorded


def test_a_recorded_address_is_used_only_while_it_listens() -> None:
    ns = f"t{uuid.uuid4().hex[:8]}"
    assert recorded(ns) is None  # nothing recorded
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        address = f"127.0.0.1:{srv.getsockname()[1]}"
        path = record(ns, address)
        assert path == address_file(ns) and oct(path.parent.stat().st_mode & 0o777) == "0o700"
        assert recorded(ns) == address
    assert recorded(ns) is None  # the cluster is gone: fall back to auto
    forget(ns, "127.0.0.1:1")  # not ours: kept
    assert address_file(ns).exists()
    forget(ns, address)
    assert not address_file(ns).exists()
