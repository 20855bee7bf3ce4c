"""Venue credentials encrypted at rest, one namespace per environment, and log redaction.

Why this shape:

- AES-256-GCM (authenticated): a flipped byte or a file copied from the other environment fails to
  decrypt instead of yielding garbage credentials. The environment is both in the clear header (for a
  clear error) and in the associated data (so editing the header does not help).
- One file per environment (``$MMATS_HOME/secrets/paper.enc``, ``live.enc``), each with its own key
  derived from the master key (HKDF, info names the environment). A PAPER process refuses to open the
  LIVE namespace at all: paper trading must never be one typo away from a real account.
- The master key comes from ``MMATS_MASTER_KEY`` (32 bytes, base64 or hex), else the OS keyring when the
  ``keyring`` package is importable and has a working backend, else a key file created with 0600
  permissions (and refused if group/other can read it, as ssh does).
- ``Secret`` never shows its value in ``repr``/``str``/f-strings; ``redact`` masks URL passwords,
  ``key=value`` secrets and every secret value this process has loaded, for log processors.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import stat
import threading
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from mmats.errors import ConfigError
from mmats.model import Environment

__all__ = [
    "MASK",
    "Secret",
    "SecretStore",
    "load_master_key",
    "redact",
    "redact_processor",
]

MASK = "***"
_FORMAT = 1
_KEYRING_SERVICE = "mmats"
_KEYRING_USER = "master-key"

# Values loaded or created in this process; redact() masks them wherever they appear. Only values long
# enough to be unambiguous are registered, so masking "abc" never mangles ordinary words.
_KNOWN: set[str] = set()
_KNOWN_LOCK = threading.Lock()
_MIN_KNOWN_LEN = 6


def _register(value: str) -> None:
    if len(value) >= _MIN_KNOWN_LEN:
        with _KNOWN_LOCK:
            _KNOWN.add(value)


_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)(?P<tail>@)")
_KV_SECRET = re.compile(
    r"(?P<head>\b[\w\-]*(?:password|passwd|pwd|secret|token|api[_\-]?key|apikey|passphrase|private[_\-]?key|"
    r"master[_\-]?key|access[_\-]?key|credential)s?[\"']?\s*[:=]\s*[\"']?)(?P<val>[^\s\"',;&}]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<head>\b(?:Bearer|Basic|Token)\s+)(?P<val>[A-Za-z0-9\-._~+/=]{8,})")


def redact(text: str) -> str:
    """Mask anything that looks like a secret: URL passwords, ``password=...``, bearer tokens, known values.

    Used on every message that might embed a connection URL or a venue error echoing our request.
    """
    if not text:
        return text
    out = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + m.group("tail"), text)
    out = _KV_SECRET.sub(lambda m: m.group("head") + MASK, out)
    out = _BEARER.sub(lambda m: m.group("head") + MASK, out)
    with _KNOWN_LOCK:
        known = sorted(_KNOWN, key=len, reverse=True)
    for value in known:
        if value in out:
            out = out.replace(value, MASK)
    return out


def redact_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: redact every string field (and masks ``Secret`` objects via their repr)."""
    for k, v in list(event_dict.items()):
        if isinstance(v, str):
            event_dict[k] = redact(v)
        elif isinstance(v, Secret):
            event_dict[k] = MASK
    return event_dict


class Secret:
    """A secret string that does not leak through ``repr``, ``str``, formatting, pickling or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret value must be a str")
        self._value = value
        _register(value)

    def reveal(self) -> str:
        """The only way to the plaintext, so every use is greppable."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:
        # Pickling (e.g. shipping to a Ray actor) would put the plaintext in the object store and its
        # spill files: refuse, and make callers load credentials inside the process that needs them.
        raise TypeError("Secret objects cannot be pickled; load credentials where they are used")

    def __bool__(self) -> bool:
        return bool(self._value)


def _decode_key(text: str, source: str) -> bytes:
    text = text.strip()
    raw: bytes | None = None
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raw = bytes.fromhex(text)
    else:
        with contextlib.suppress(binascii.Error, ValueError):
            padded = text + "=" * (-len(text) % 4)
            urlsafe = "-" in text or "_" in text
            raw = base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded, validate=True)
    if raw is None or len(raw) != 32:
        # Never echo the value: a wrong key is still a key.
        raise ConfigError(f"{source} must be 32 bytes encoded as base64 or 64 hex characters")
    return raw


def _keyring() -> Any:
    try:
        import keyring
    except Exception:
        return None
    return keyring


def load_master_key(home: str | os.PathLike[str], *, use_keyring: bool = True, create: bool = True) -> bytes:
    """Find the 32-byte master key: ``MMATS_MASTER_KEY`` > OS keyring > ``<home>/secrets/master.key`` (0600)."""
    env = os.environ.get("MMATS_MASTER_KEY")
    if env:
        return _decode_key(env, "MMATS_MASTER_KEY")
    kr = _keyring() if use_keyring else None
    if kr is not None:
        try:
            stored = kr.get_password(_KEYRING_SERVICE, _KEYRING_USER)
            if stored:
                return _decode_key(stored, "the OS keyring entry mmats/master-key")
            if create:
                key = os.urandom(32)
                kr.set_password(_KEYRING_SERVICE, _KEYRING_USER, base64.b64encode(key).decode())
                return key
        except ConfigError:
            raise
        except Exception:  # no usable backend (headless server): fall through to the key file
            pass
    path = Path(home) / "secrets" / "master.key"
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"master key file {path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
        return _decode_key(path.read_text(), f"master key file {path}")
    if not create:
        raise ConfigError(f"no master key: set MMATS_MASTER_KEY or create {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode() + "\n")
    return key


def _derive(master: bytes, environment: Environment) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = f"mmats secrets v{_FORMAT} {environment.value}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def _aad(environment: Environment) -> bytes:
    return f"mmats-secrets-v{_FORMAT}:{environment.value}".encode()


class SecretStore:
    """The encrypted credential namespace of ONE environment.

    ``SecretStore(home, Environment.PAPER)`` reads and writes ``<home>/secrets/paper.enc`` only.
    ``namespace(env)`` / ``get(name, environment=...)`` for another environment raise ``ConfigError``.
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        environment: Environment,
        *,
        master_key: bytes | None = None,
        use_keyring: bool = True,
    ) -> None:
        self.environment = Environment(environment)
        if self.environment is Environment.BACKTEST:
            raise ConfigError("backtests use no credentials; open the secret store for PAPER or LIVE")
        self.home = Path(home)
        self.path = self.home / "secrets" / f"{self.environment.value.lower()}.enc"
        master = master_key if master_key is not None else load_master_key(self.home, use_keyring=use_keyring)
        if len(master) != 32:
            raise ConfigError("master key must be 32 bytes (AES-256)")
        self._key = _derive(master, self.environment)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SecretStore({str(self.path)!r}, environment={self.environment.value})"

    def _guard(self, environment: Environment | None) -> None:
        if environment is None or Environment(environment) is self.environment:
            return
        other = Environment(environment)
        if self.environment is Environment.PAPER and other is Environment.LIVE:
            raise ConfigError("a PAPER process cannot load LIVE credentials (environments are strictly separate)")
        raise ConfigError(
            f"this secret store is for {self.environment.value}; {other.value} credentials live in their own "
            f"namespace and process"
        )

    def _read(self) -> dict[str, str]:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text())
            env = doc["environment"]
            nonce = base64.b64decode(doc["nonce"])
            blob = base64.b64decode(doc["ciphertext"])
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"secret file {self.path} is not a valid MMATS secret file") from None
        if env != self.environment.value:
            raise ConfigError(
                f"secret file {self.path} holds {env} credentials; refusing to load them for "
                f"{self.environment.value}"
            )
        try:
            plain = AESGCM(self._key).decrypt(nonce, blob, _aad(self.environment))
        except InvalidTag:
            raise ConfigError(
                f"cannot decrypt {self.path}: wrong master key, or the file was modified or copied "
                "from another environment"
            ) from None
        data: dict[str, str] = json.loads(plain)
        for v in data.values():
            _register(v)
        return data

    def _write(self, data: Mapping[str, str]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(12)
        blob = AESGCM(self._key).encrypt(nonce, json.dumps(dict(data), sort_keys=True).encode(),
                                         _aad(self.environment))
        doc = {"format": _FORMAT, "environment": self.environment.value,
               "nonce": base64.b64encode(nonce).decode(), "ciphertext": base64.b64encode(blob).decode()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)  # the file is 0600; its folder need not be listable by others
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(doc))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def set(self, name: str, value: str | Secret) -> None:
        if not name:
            raise ConfigError("secret name is empty")
        plain = value.reveal() if isinstance(value, Secret) else value
        _register(plain)
        with self._lock:
            data = self._read()
            data[name] = plain
            self._write(data)

    def get(self, name: str, *, environment: Environment | None = None) -> Secret:
        self._guard(environment)
        with self._lock:
            data = self._read()
        if name not in data:
            raise ConfigError(f"no {self.environment.value} secret named {name!r} (known: {sorted(data)})")
        return Secret(data[name])

    def get_optional(self, name: str) -> Secret | None:
        with self._lock:
            data = self._read()
        return Secret(data[name]) if name in data else None

    def delete(self, name: str) -> bool:
        with self._lock:
            data = self._read()
            if name not in data:
                return False
            del data[name]
            self._write(data)
            return True

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._read())

    def namespace(self, environment: Environment) -> dict[str, Secret]:
        """All credentials of ``environment``; anything but this store's own environment is refused."""
        self._guard(environment)
        with self._lock:
            return {k: Secret(v) for k, v in self._read().items()}
