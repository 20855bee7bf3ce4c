"""The tamper-evident audit journal: append-only, every record hash-chained to the one before it.

Each record is ``{seq, ts, kind, payload, prev_hash, hash}`` where ``ts`` is UTC nanoseconds and
``hash = SHA-256(prev_hash + canonical JSON of the record without "hash")``. Canonical JSON means sorted
keys, no whitespace, UTF-8 kept as is, and a deterministic text for Decimals, enums and datetimes, so
the hash computed when writing is the hash recomputed by anyone verifying, in any process, from any
store (this file journal or the SQL one of the actor runtime, which rebuilds records with
``chain_record``). Editing, deleting, reordering or truncating records breaks the chain at the first
affected record, and ``verify_records`` names it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol, runtime_checkable

from mmats.errors import MmatsError
from mmats.model import iso

GENESIS_HASH = "0" * 64
KINDS = ("signal", "risk_decision", "order", "fill", "kill_switch", "config")


class JournalCorrupt(MmatsError):
    """An existing journal cannot be extended: its last line is not a valid record."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    ts_ns: int
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts_ns, "kind": self.kind, "payload": self.payload,
                "prev_hash": self.prev_hash, "hash": self.hash}

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditRecord:
        """Strict: a missing or mistyped field is a ``ValueError`` the verifier reports as a bad record."""
        seq, ts, kind, payload = d["seq"], d["ts"], d["kind"], d["payload"]
        prev_hash, hash_ = d["prev_hash"], d["hash"]
        if not (isinstance(seq, int) and isinstance(ts, int) and isinstance(kind, str) and isinstance(payload, dict)
                and isinstance(prev_hash, str) and isinstance(hash_, str)) or isinstance(seq, bool):
            raise ValueError("record fields have the wrong types")
        extra = set(d) - {"seq", "ts", "kind", "payload", "prev_hash", "hash"}
        if extra:
            raise ValueError(f"unexpected fields {sorted(extra)}")
        return cls(seq, ts, kind, payload, prev_hash, hash_)


# --------------------------------------------------------------------------------- canonical form


def to_jsonable(value: Any) -> Any:
    """The JSON-native value that is hashed and stored: what a verifier reads back is what was hashed.

    Decimals become their exact string, enums their value, datetimes ISO UTC text, non-finite floats
    the strings "NaN"/"Infinity"/"-Infinity" (JSON has no such numbers), tuples lists.
    """
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is dict:
        return {k if type(k) is str else str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [to_jsonable(v) for v in value]
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, (str, int)):  # subclasses of the plain types
        return str(value) if isinstance(value, str) else int(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [to_jsonable(v) for v in value]
        return sorted(items, key=canonical_json) if isinstance(value, (set, frozenset)) else items
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_jsonable(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    raise TypeError(f"cannot journal a value of type {type(value).__name__}")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class EncodedItem(NamedTuple):
    """A record's content in canonical form, built before its place in the chain is known: a writer
    encodes its batch before it takes the database's write lock and only chains it under the lock."""

    kind: str
    payload: Any  # JSON-native (``to_jsonable``)
    text: str  # ``canonical_json(payload)``
    ts_ns: int


def encode_item(kind: str, payload: Mapping[str, Any], ts_ns: int) -> EncodedItem:
    if not kind:
        raise ValueError("audit record kind is empty")
    data = to_jsonable(payload)
    return EncodedItem(kind, data, canonical_json(data), int(ts_ns))


def _hash(seq: int, ts_ns: int, kind: str, payload_text: str, prev_hash: str) -> str:
    """SHA-256 of ``prev_hash`` + the canonical JSON of {seq, ts, kind, payload, prev_hash}, spliced
    from the payload's own canonical text (keys in sorted order, as ``canonical_json`` writes them)."""
    body = (f'{{"kind":{canonical_json(kind)},"payload":{payload_text},"prev_hash":{canonical_json(prev_hash)},'
            f'"seq":{int(seq)},"ts":{int(ts_ns)}}}')
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def record_hash(seq: int, ts_ns: int, kind: str, payload: Mapping[str, Any], prev_hash: str) -> str:
    return _hash(seq, ts_ns, kind, canonical_json(payload), prev_hash)


def chain_encoded(tail: tuple[int, str] | None, item: EncodedItem) -> AuditRecord:
    """The record that extends the chain whose last record has (seq, hash) ``tail`` (or starts a chain
    at seq 1): the one way records are built. A writer needs only those two fields of the stored tail."""
    seq = 1 if tail is None else tail[0] + 1
    prev_hash = GENESIS_HASH if tail is None else tail[1]
    return AuditRecord(seq, item.ts_ns, item.kind, item.payload, prev_hash,
                       _hash(seq, item.ts_ns, item.kind, item.text, prev_hash))


def chain_record(prev: AuditRecord | None, kind: str, payload: Mapping[str, Any], ts_ns: int) -> AuditRecord:
    return chain_encoded(None if prev is None else (prev.seq, prev.hash), encode_item(kind, payload, ts_ns))


# ---------------------------------------------------------------------------------------- journals


@runtime_checkable
class Journal(Protocol):
    """Where every signal, decision, order event, fill and kill-switch change is written *first*."""

    def append(self, kind: str, payload: Mapping[str, Any], ts_ns: int) -> AuditRecord: ...

    def records(self) -> Iterator[AuditRecord]: ...


class InMemoryJournal:
    """For tests, and for backtests that keep the journal in the result instead of a file."""

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: list[AuditRecord] = []

    def append(self, kind: str, payload: Mapping[str, Any], ts_ns: int) -> AuditRecord:
        rec = chain_record(self._records[-1] if self._records else None, kind, payload, ts_ns)
        self._records.append(rec)
        return rec

    def records(self) -> Iterator[AuditRecord]:
        return iter(list(self._records))

    @property
    def last(self) -> AuditRecord | None:
        return self._records[-1] if self._records else None

    def __len__(self) -> int:
        return len(self._records)


class FileJournal:
    """Append-only JSONL. Each append is written and flushed before it returns; ``fsync=True`` also
    forces it to disk, for live trading where "written before it takes effect" must survive a power cut.

    Opening an existing file resumes its chain from the last record, so an actor restart extends the
    same journal; a file whose last line is not a record (a crash mid-write) is refused rather than
    extended past the damage.
    """

    def __init__(self, path: str | os.PathLike[str], fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._last = _last_record(self.path)
        self._fh: IO[str] | None = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115

    @property
    def last(self) -> AuditRecord | None:
        return self._last

    def append(self, kind: str, payload: Mapping[str, Any], ts_ns: int) -> AuditRecord:
        if self._fh is None:
            raise ValueError(f"journal {self.path} is closed")
        rec = chain_record(self._last, kind, payload, ts_ns)
        self._fh.write(rec.to_json() + "\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())
        self._last = rec
        return rec

    def records(self) -> Iterator[AuditRecord]:
        if self._fh is not None:
            self._fh.flush()
        return read_records(self.path)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> FileJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: str | os.PathLike[str]) -> Iterator[AuditRecord]:
    """Records of a JSONL journal in file order; raises ``ValueError`` on the first unreadable line."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield AuditRecord.from_dict(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"line {n}: not an audit record ({exc})") from None


def _last_record(path: Path) -> AuditRecord | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        block = b""
        pos = end
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            fh.seek(pos)
            block = fh.read(step) + block
            stripped = block.rstrip(b"\r\n")
            if b"\n" in stripped or pos == 0:
                break
    raw = block.rstrip(b"\r\n")
    tail = raw.rsplit(b"\n", 1)[-1]
    if not block.endswith(b"\n"):
        raise JournalCorrupt(f"audit journal {path}: the last line is incomplete (crash mid-write?); "
                             f"run `mmats audit verify {path}` and start a new journal")
    try:
        return AuditRecord.from_dict(json.loads(tail.decode("utf-8")))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise JournalCorrupt(f"audit journal {path}: the last line is not a record ({exc}); "
                             f"run `mmats audit verify {path}`") from None


# -------------------------------------------------------------------------------------- verification


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """``first_bad_seq`` is the seq the first bad record has, or should have had (a missing record);
    ``line`` its 1-based line in a file (position in the sequence otherwise); ``head_hash`` the hash of
    the last good record, to compare with an anchor kept elsewhere (deleting records at the very end of
    a chain leaves a valid shorter chain: only an anchor reveals it).
    """

    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str = ""
    line: int | None = None
    head_hash: str = GENESIS_HASH


def verify_records(records: Iterable[AuditRecord | Mapping[str, Any]]) -> VerifyResult:
    expected_seq = 1
    prev_hash = GENESIS_HASH
    count = 0
    for pos, item in enumerate(records, 1):
        try:
            rec = item if isinstance(item, AuditRecord) else AuditRecord.from_dict(item)
        except (ValueError, KeyError, TypeError) as exc:
            return _bad(count, expected_seq, pos, prev_hash, f"not an audit record ({exc})")
        problem = _check(rec, expected_seq, prev_hash)
        if problem:
            return _bad(count, expected_seq, pos, prev_hash, problem)
        prev_hash = rec.hash
        expected_seq += 1
        count += 1
    return VerifyResult(True, count, head_hash=prev_hash)


def verify_file(path: str | os.PathLike[str]) -> VerifyResult:
    """Check a JSONL journal line by line; the first damage (garbage, truncation, gap, edit, reorder) wins."""
    p = Path(path)
    try:
        fh = open(p, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        return VerifyResult(False, 0, None, f"cannot read the journal: {exc.strerror or exc}")
    with fh:
        expected_seq = 1
        prev_hash = GENESIS_HASH
        count = 0
        try:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    return _bad(count, expected_seq, n, prev_hash, "empty line inside the journal")
                if not line.endswith("\n"):
                    return _bad(count, expected_seq, n, prev_hash, "truncated last line (no newline)")
                try:
                    rec = AuditRecord.from_dict(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    return _bad(count, expected_seq, n, prev_hash, f"not an audit record ({exc})")
                problem = _check(rec, expected_seq, prev_hash)
                if problem:
                    return _bad(count, expected_seq, n, prev_hash, problem)
                prev_hash = rec.hash
                expected_seq += 1
                count += 1
        except UnicodeDecodeError as exc:
            return _bad(count, expected_seq, count + 1, prev_hash, f"bytes that are not UTF-8 ({exc.reason})")
    return VerifyResult(True, count, head_hash=prev_hash)


def _check(rec: AuditRecord, expected_seq: int, prev_hash: str) -> str:
    """Why ``rec`` cannot be record number ``expected_seq`` of the chain ("" when it can)."""
    if rec.seq < expected_seq:
        return f"found seq {rec.seq} where {expected_seq} was expected: records reordered or duplicated"
    if rec.seq > expected_seq:
        missing = f"{expected_seq}" if rec.seq == expected_seq + 1 else f"{expected_seq}..{rec.seq - 1}"
        return f"found seq {rec.seq} where {expected_seq} was expected: record(s) {missing} missing or moved"
    if rec.prev_hash != prev_hash:
        return "prev_hash does not match the previous record's hash (a record before it was removed or replaced)"
    try:
        actual = record_hash(rec.seq, rec.ts_ns, rec.kind, rec.payload, rec.prev_hash)
    except (TypeError, ValueError) as exc:
        return f"payload cannot be hashed ({exc})"
    if actual != rec.hash:
        return "hash mismatch: the record's content was altered"
    return ""


def _bad(count: int, seq: int, line: int, head: str, problem: str) -> VerifyResult:
    return VerifyResult(False, count, seq, f"line {line}: {problem}", line, head)
