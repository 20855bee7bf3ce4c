"""Secrets at rest: AES-256-GCM, one namespace per environment, never printed."""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import stat
from pathlib import Path

import pytest

from adapters.secrets import MASK, Secret, SecretStore, load_master_key, redact, redact_processor
from mmats.errors import ConfigError
from mmats.model import Environment

KEY = bytes(range(32))
API_SECRET = "sk-live-7f3a9c1e55d04b2a"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMATS_MASTER_KEY", raising=False)


def _store(home: Path, env: Environment = Environment.PAPER, key: bytes = KEY) -> SecretStore:
    return SecretStore(home, env, master_key=key, use_keyring=False)


def test_round_trip_and_ciphertext_hides_the_value(tmp_path: Path) -> None:
    s = _store(tmp_path)
    s.set("binance.api_secret", API_SECRET)
    s.set("binance.api_key", "pk-abcdef123456")
    assert s.get("binance.api_secret").reveal() == API_SECRET
    assert s.names() == ["binance.api_key", "binance.api_secret"]
    raw = (tmp_path / "secrets" / "paper.enc").read_bytes()
    assert API_SECRET.encode() not in raw and b"binance" not in raw
    assert stat.S_IMODE((tmp_path / "secrets" / "paper.enc").stat().st_mode) == 0o600
    # a second process with the same key reads the same values
    assert _store(tmp_path).get("binance.api_key").reveal() == "pk-abcdef123456"
    assert s.delete("binance.api_key") and not s.delete("binance.api_key")
    with pytest.raises(ConfigError, match=r"no PAPER secret named 'binance\.api_key'"):
        s.get("binance.api_key")


def test_paper_process_refuses_live_credentials(tmp_path: Path) -> None:
    live = _store(tmp_path, Environment.LIVE)
    live.set("oanda.token", API_SECRET)
    paper = _store(tmp_path, Environment.PAPER)
    with pytest.raises(ConfigError, match="PAPER process cannot load LIVE credentials"):
        paper.get("oanda.token", environment=Environment.LIVE)
    with pytest.raises(ConfigError, match="PAPER process cannot load LIVE credentials"):
        paper.namespace(Environment.LIVE)
    assert paper.names() == []  # the PAPER namespace is its own file
    # copying the LIVE file over the PAPER one is caught by the header check ...
    (tmp_path / "secrets" / "paper.enc").write_bytes((tmp_path / "secrets" / "live.enc").read_bytes())
    with pytest.raises(ConfigError, match="holds LIVE credentials"):
        paper.names()
    # ... and editing the header does not help: the environment is authenticated data, and the key differs
    doc = json.loads((tmp_path / "secrets" / "live.enc").read_text())
    doc["environment"] = "PAPER"
    (tmp_path / "secrets" / "paper.enc").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="cannot decrypt"):
        paper.names()


def test_live_store_also_keeps_to_its_namespace(tmp_path: Path) -> None:
    live = _store(tmp_path, Environment.LIVE)
    with pytest.raises(ConfigError, match="for LIVE"):
        live.namespace(Environment.PAPER)
    with pytest.raises(ConfigError, match="no credentials"):
        _store(tmp_path, Environment.BACKTEST)


def test_wrong_key_and_tampering_fail_cleanly(tmp_path: Path) -> None:
    _store(tmp_path).set("k", API_SECRET)
    with pytest.raises(ConfigError, match="wrong master key") as exc:
        _store(tmp_path, key=bytes(32)).get("k")
    assert API_SECRET not in str(exc.value)
    path = tmp_path / "secrets" / "paper.enc"
    doc = json.loads(path.read_text())
    blob = bytearray(base64.b64decode(doc["ciphertext"]))
    blob[0] ^= 1
    doc["ciphertext"] = base64.b64encode(bytes(blob)).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="modified"):
        _store(tmp_path).get("k")
    path.write_text("not json")
    with pytest.raises(ConfigError, match="not a valid MMATS secret file"):
        _store(tmp_path).names()


def test_master_key_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMATS_MASTER_KEY", base64.b64encode(KEY).decode())
    assert load_master_key(tmp_path, use_keyring=False) == KEY
    monkeypatch.setenv("MMATS_MASTER_KEY", KEY.hex())
    assert load_master_key(tmp_path, use_keyring=False) == KEY
    monkeypatch.setenv("MMATS_MASTER_KEY", "hunter2-not-a-key")
    with pytest.raises(ConfigError, match="MMATS_MASTER_KEY must be 32 bytes") as exc:
        load_master_key(tmp_path, use_keyring=False)
    assert "hunter2" not in str(exc.value)
    assert not (tmp_path / "secrets" / "master.key").exists()


def test_key_file_is_created_private_and_loose_permissions_are_refused(tmp_path: Path) -> None:
    k1 = load_master_key(tmp_path, use_keyring=False)
    path = tmp_path / "secrets" / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_key(tmp_path, use_keyring=False) == k1 and len(k1) == 32
    s = SecretStore(tmp_path, Environment.PAPER, use_keyring=False)
    s.set("x", "value-123456")
    assert SecretStore(tmp_path, Environment.PAPER, use_keyring=False).get("x").reveal() == "value-123456"
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_master_key(tmp_path, use_keyring=False)
    with pytest.raises(ConfigError, match="no master key"):
        load_master_key(tmp_path / "other", use_keyring=False, create=False)


def test_secret_never_shows_its_value(caplog: pytest.LogCaptureFixture) -> None:
    s = Secret(API_SECRET)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", format(s, ""), f"{[s]}", f"{ {'k': s} }"):
        assert API_SECRET not in text and MASK in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(s)
    with caplog.at_level(logging.INFO):
        logging.getLogger("mmats.test").info("creds %s %r", s, {"secret": s})
    assert API_SECRET not in caplog.text
    assert s == Secret(API_SECRET) and s.reveal() == API_SECRET


def test_redact_masks_urls_pairs_tokens_and_known_values() -> None:
    Secret(API_SECRET)  # registers the value
    text = (
        "db postgresql+psycopg://trader:pa55w0rd@db:5432/mmats redis://:r3dispw@127.0.0.1:6379/0 "
        "api_key=AKIA123456 password: 'p@ss' Authorization: Bearer abcdefghijk12345 "
        f"venue echoed {API_SECRET}"
    )
    out = redact(text)
    for leaked in ("pa55w0rd", "r3dispw", "AKIA123456", "p@ss", "abcdefghijk12345", API_SECRET):
        assert leaked not in out, leaked
    assert "postgresql+psycopg://trader:***@db:5432/mmats" in out
    assert redact("plain message, nothing secret") == "plain message, nothing secret"
    event = redact_processor(None, "info", {"event": f"login {API_SECRET}", "cred": Secret(API_SECRET), "n": 1})
    assert event == {"event": "login ***", "cred": MASK, "n": 1}
