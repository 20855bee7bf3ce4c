"""The API token's life cycle (no Ray needed): env var, generated once into $MMATS_HOME with 0600, reused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

import serve_app
from mmats.errors import ConfigError

pytestmark = [pytest.mark.e2e]


def test_generated_once_stored_0600_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMATS_API_TOKEN", raising=False)
    token, created, where = serve_app.load_or_create_token(tmp_path)
    assert created and len(token) >= 32 and where == str(tmp_path / "secrets" / "api_token")
    path = Path(where)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again, created2, _ = serve_app.load_or_create_token(tmp_path)
    assert again == token and not created2
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        serve_app.load_or_create_token(tmp_path)


def test_env_token_wins_and_must_be_long(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMATS_API_TOKEN", "x" * 20)
    token, created, where = serve_app.load_or_create_token(tmp_path)
    assert token == "x" * 20 and not created and where == "$MMATS_API_TOKEN"
    assert not (tmp_path / "secrets").exists()
    monkeypatch.setenv("MMATS_API_TOKEN", "short")
    with pytest.raises(ConfigError, match="too short"):
        serve_app.load_or_create_token(tmp_path)


def test_build_app_prints_a_new_token_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MMATS_API_TOKEN", raising=False)
    serve_app.build_app({"home": str(tmp_path)})
    first = capsys.readouterr().out
    token = (tmp_path / "secrets" / "api_token").read_text().strip()
    assert token in first
    serve_app.build_app({"home": str(tmp_path)})
    assert token not in capsys.readouterr().out


def test_loopback_detection() -> None:
    assert serve_app.is_loopback("127.0.0.1") and serve_app.is_loopback("::1") and serve_app.is_loopback("localhost")
    assert not serve_app.is_loopback("0.0.0.0") and not serve_app.is_loopback("192.168.1.10")
    assert not serve_app.is_loopback("") and not serve_app.is_loopback("example.com")
