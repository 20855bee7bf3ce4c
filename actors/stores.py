"""Opening the system of record from inside an actor: SQL storage, its audit journal, the state store.

Each actor process opens its own connections (they cannot be pickled into actor arguments); they all
point at the same database and state store, chosen by environment and home (docs/persistence.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.sql_store import SqlJournal, SqlStorage, make_storage
from adapters.state_store import make_state_store
from mmats.model import Environment


@dataclass
class Stores:
    storage: SqlStorage
    journal: SqlJournal
    state: Any


def open_stores(persist: dict[str, Any]) -> Stores:
    env = Environment(persist.get("environment", "PAPER"))
    storage = make_storage(env, persist.get("database_url"), home=persist.get("home"))
    state = make_state_store(persist.get("redis_url"), persist.get("home"), environment=env,
                             prefix=persist.get("redis_prefix"))
    return Stores(storage, SqlJournal(storage), state)
