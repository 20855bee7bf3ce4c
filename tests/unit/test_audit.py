"""Hash-chained audit journal: canonical form, file journal, and detection of every tampering kind."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmats.audit import (
    GENESIS_HASH,
    AuditRecord,
    FileJournal,
    InMemoryJournal,
    Journal,
    JournalCorrupt,
    canonical_json,
    chain_record,
    read_records,
    record_hash,
    to_jsonable,
    verify_file,
    verify_records,
)
from mmats.model import Side


def _fill(journal: Journal, n: int) -> None:
    kinds = ["signal", "risk_decision", "order", "fill", "kill_switch", "config"]
    for i in range(n):
        journal.append(kinds[i % len(kinds)], {"i": i, "qty": Decimal("0.1") * i, "side": Side.BUY, "név": "é"},
                       1_700_000_000_000_000_000 + i)


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture
def journal_file(tmp_path: Path) -> Path:
    p = tmp_path / "audit.jsonl"
    with FileJournal(p) as j:
        _fill(j, 8)
    return p


def test_records_are_canonical_and_chained() -> None:
    j = InMemoryJournal()
    _fill(j, 3)
    recs = list(j.records())
    assert [r.seq for r in recs] == [1, 2, 3]
    assert recs[0].prev_hash == GENESIS_HASH and recs[1].prev_hash == recs[0].hash
    assert recs[1].payload == {"i": 1, "qty": "0.1", "side": "BUY", "név": "é"}
    r = recs[2]
    body = canonical_json({"seq": r.seq, "ts": r.ts_ns, "kind": r.kind, "payload": r.payload,
                           "prev_hash": r.prev_hash})
    import hashlib

    assert r.hash == hashlib.sha256((r.prev_hash + body).encode()).hexdigest()
    assert verify_records(recs).ok and verify_records(r.to_dict() for r in recs).records == 3


def test_canonical_form_is_deterministic() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    value = {"b": Decimal("1.50"), "a": (1, 2.5, float("nan")), "t": when, "s": {"y", "x"}}
    assert to_jsonable(value) == {"b": "1.50", "a": [1, 2.5, "NaN"], "t": "2024-01-02T03:04:05.600000Z",
                                  "s": ["x", "y"]}
    assert canonical_json(to_jsonable(value)).startswith('{"a":[1,2.5,"NaN"],"b":"1.50"')
    assert record_hash(1, 2, "k", {"a": 1, "b": 2}, GENESIS_HASH) == record_hash(1, 2, "k", {"b": 2, "a": 1},
                                                                                 GENESIS_HASH)
    with pytest.raises(TypeError):
        to_jsonable(object())


def test_file_journal_writes_jsonl_and_resumes_the_chain(journal_file: Path) -> None:
    lines = journal_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8 and json.loads(lines[0])["seq"] == 1 and "é" in lines[0]  # ensure_ascii=False
    with FileJournal(journal_file, fsync=True) as j:
        assert j.last is not None and j.last.seq == 8
        rec = j.append("config", {"profile": "moderate"}, 5)
        assert rec.seq == 9
    res = verify_file(journal_file)
    assert res.ok and res.records == 9 and res.first_bad_seq is None
    assert res.head_hash == list(read_records(journal_file))[-1].hash


def test_file_journal_refuses_to_extend_a_damaged_tail(journal_file: Path) -> None:
    with open(journal_file, "a", encoding="utf-8") as fh:
        fh.write('{"seq": 9, "ts"')
    with pytest.raises(JournalCorrupt):
        FileJournal(journal_file)


def test_intact_and_empty_journals_verify(tmp_path: Path, journal_file: Path) -> None:
    assert verify_file(journal_file).ok
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert verify_file(empty) == verify_file(empty) and verify_file(empty).ok and verify_file(empty).records == 0
    missing = verify_file(tmp_path / "nope.jsonl")
    assert not missing.ok and "cannot read" in missing.problem


def test_edited_payload_is_detected(journal_file: Path) -> None:
    lines = journal_file.read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[4])
    rec["payload"]["qty"] = "999"
    lines[4] = json.dumps(rec)
    _write(journal_file, lines)
    res = verify_file(journal_file)
    assert not res.ok and res.first_bad_seq == 5 and res.line == 5 and "altered" in res.problem


def test_edit_with_recomputed_hash_still_breaks_the_next_link(journal_file: Path) -> None:
    lines = journal_file.read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[2])
    rec["payload"]["i"] = 42
    rec["hash"] = record_hash(rec["seq"], rec["ts"], rec["kind"], rec["payload"], rec["prev_hash"])
    lines[2] = json.dumps(rec)
    _write(journal_file, lines)
    res = verify_file(journal_file)
    assert not res.ok and res.first_bad_seq == 4 and "prev_hash" in res.problem


def test_reordered_records_are_detected(journal_file: Path) -> None:
    lines = journal_file.read_text(encoding="utf-8").splitlines()
    lines[2], lines[3] = lines[3], lines[2]
    _write(journal_file, lines)
    res = verify_file(journal_file)
    assert not res.ok and res.first_bad_seq == 3 and res.line == 3 and "seq 4 where 3" in res.problem


def test_deleted_record_is_detected(journal_file: Path) -> None:
    lines = journal_file.read_text(encoding="utf-8").splitlines()
    del lines[5]
    _write(journal_file, lines)
    res = verify_file(journal_file)
    assert not res.ok and res.first_bad_seq == 6 and res.records == 5 and "missing" in res.problem
    first = journal_file.read_text(encoding="utf-8").splitlines()[1:]
    _write(journal_file, first)
    assert verify_file(journal_file).first_bad_seq == 1


def test_truncated_and_garbage_lines_are_detected(journal_file: Path) -> None:
    text = journal_file.read_text(encoding="utf-8")
    journal_file.write_text(text[: len(text) - 40], encoding="utf-8")  # cut inside the last record
    res = verify_file(journal_file)
    assert not res.ok and res.first_bad_seq == 8 and res.line == 8 and res.records == 7
    lines = text.splitlines()
    lines[1] = "not json at all"
    _write(journal_file, lines)
    res = verify_file(journal_file)
    assert not res.ok and res.first_bad_seq == 2 and "not an audit record" in res.problem
    lines = text.splitlines()
    lines.insert(3, "")
    _write(journal_file, lines)
    assert verify_file(journal_file).first_bad_seq == 4


def test_truncation_at_a_record_boundary_is_visible_only_through_the_head_hash(journal_file: Path) -> None:
    full = verify_file(journal_file)
    lines = journal_file.read_text(encoding="utf-8").splitlines()
    _write(journal_file, lines[:-2])
    short = verify_file(journal_file)
    assert short.ok and short.records == 6 and short.head_hash != full.head_hash


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 12), data=st.data())
def test_any_single_tampering_is_detected(n: int, data: st.DataObject) -> None:
    j = InMemoryJournal()
    _fill(j, n)
    recs = [r.to_dict() for r in j.records()]
    kind = data.draw(st.sampled_from(["edit", "swap", "delete", "kind"]))
    k = data.draw(st.integers(0, n - 2))
    if kind == "edit":
        recs[k]["payload"]["i"] = -1
    elif kind == "swap":
        recs[k], recs[k + 1] = recs[k + 1], recs[k]
    elif kind == "delete":
        del recs[k]
    else:
        recs[k]["kind"] = "fill" if recs[k]["kind"] != "fill" else "order"
    res = verify_records(recs)
    assert not res.ok and res.first_bad_seq == k + 1


def test_chain_record_round_trips_through_a_store() -> None:
    """What the SQL journal does: rebuild records from stored columns and verify them."""
    prev = None
    stored = []
    for i in range(3):
        prev = chain_record(prev, "order", {"n": i, "px": Decimal("1.25")}, i)
        stored.append(json.loads(json.dumps(prev.to_dict())))
    back = [AuditRecord.from_dict(d) for d in stored]
    assert verify_records(back).ok
    with pytest.raises(ValueError):
        AuditRecord.from_dict({**stored[0], "extra": 1})


@pytest.mark.parametrize("payload", [
    {},
    {"b": 1, "a": [1.5, "x", None, True], "ünï": {"z": "ç", "y": [{"k": -0.0}]}},
    {"price": "123.4500", "nested": {"deep": {"deeper": [1, 2, {"x": "\u2603\n\"quoted\""}]}}},
])
def test_hash_spliced_from_the_payload_text_equals_the_canonical_form_of_the_whole_record(payload: dict) -> None:
    """Writers encode payloads before taking the write lock and splice them in; the hash must be the
    one a verifier computes from the whole record's canonical JSON."""
    import hashlib

    from mmats.audit import GENESIS_HASH, canonical_json, chain_record, record_hash

    rec = chain_record(None, "kind-ä", payload, 1_700_000_000_000_000_123)
    body = canonical_json({"seq": 1, "ts": 1_700_000_000_000_000_123, "kind": "kind-ä", "payload": rec.payload,
                           "prev_hash": GENESIS_HASH})
    assert rec.hash == hashlib.sha256((GENESIS_HASH + body).encode("utf-8")).hexdigest()
    assert record_hash(rec.seq, rec.ts_ns, rec.kind, rec.payload, rec.prev_hash) == rec.hash
    nxt = chain_record(rec, "k", payload, 5)
    body2 = canonical_json({"seq": 2, "ts": 5, "kind": "k", "payload": nxt.payload, "prev_hash": rec.hash})
    assert nxt.hash == hashlib.sha256((rec.hash + body2).encode("utf-8")).hexdigest()
