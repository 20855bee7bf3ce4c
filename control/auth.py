"""Who may call the API: the token (where it comes from, how it is stored) and the FastAPI dependencies
that check it.

The replica only knows the token's SHA-256, never the token; a mutating endpoint always needs it, a read
only when the app is bound to a non-loopback address (``all_endpoints``). Comparison is constant-time.
"""

import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from control.problems import Forbidden, Unauthorized
from mmats.errors import ConfigError

TOKEN_ENV = "MMATS_API_TOKEN"


def token_path(home: str | os.PathLike[str]) -> Path:
    return Path(home) / "secrets" / "api_token"


def load_or_create_token(home: str | os.PathLike[str]) -> tuple[str, bool, str]:
    """The API token: ``$MMATS_API_TOKEN``, else ``<home>/secrets/api_token`` (created 0600 on first start).

    Returns ``(token, created_now, where)``; the caller prints a created token once, never again.
    """
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        if len(env) < 16:
            raise ConfigError(f"{TOKEN_ENV} is too short: use at least 16 random characters")
        return env, False, f"${TOKEN_ENV}"
    path = token_path(home)
    if path.is_file():
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"{path} is readable by other users: chmod 600 {path}")
        token = path.read_text().strip()
        if len(token) < 16:
            raise ConfigError(f"{path} holds no usable token: delete it to generate a new one")
        return token, False, str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token, True, str(path)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="The API token: $MMATS_API_TOKEN, or the one `mmats up` printed on first start "
                                "(stored in $MMATS_HOME/secrets/api_token).")


class _Auth:
    """The replica's auth settings (a process global: Serve runs a copy of the FastAPI app per replica)."""

    digest = ""  # SHA-256 of the token; empty = no token accepted (fail closed)
    all_endpoints = True


AUTH = _Auth()


def configure_auth(digest: str, all_endpoints: bool) -> None:
    """Called by the replica's constructor: every route's dependency reads this module's AUTH."""
    AUTH.digest = digest
    AUTH.all_endpoints = all_endpoints or not digest


def check_token(request: Request) -> None:
    auth = AUTH
    challenge = {"WWW-Authenticate": 'Bearer realm="mmats"'}
    header = request.headers.get("authorization")
    if header is None:
        raise Unauthorized("this endpoint needs the API token (header 'Authorization: Bearer <token>')",
                           headers=challenge)
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or " " in value:
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'", headers=challenge)
    if not auth.digest or not hmac.compare_digest(token_digest(value), auth.digest):
        raise Forbidden("the API token is not valid")


async def require_write(request: Request, _creds: Annotated[Any, Depends(bearer)] = None) -> None:
    check_token(request)


async def require_read(request: Request, _creds: Annotated[Any, Depends(bearer)] = None) -> None:
    if AUTH.all_endpoints:
        check_token(request)


READ = [Depends(require_read)]
WRITE = [Depends(require_write)]



# ------------------------------------------------------------------------------- the CLI's check
# The CLI talks to the actor system through Ray, not over HTTP, so the HTTP dependency above never sees
# it. ``mmats up`` publishes the token's SHA-256 in the cluster's key-value store; a mutating CLI command
# (kill, mode, strategy submit/enable/disable, down) then proves it holds the token, exactly as a
# mutating HTTP call must: ``$MMATS_API_TOKEN`` when set, else the token file of the system's home.

KV_KEY = "api_token_sha256"


def _kv_namespace(namespace: str, supervisor: str) -> str:
    return f"mmats:{namespace}:{supervisor}"


def publish_digest(digest: str, namespace: str, supervisor: str) -> None:
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(KV_KEY, digest, overwrite=True, namespace=_kv_namespace(namespace, supervisor))


def published_digest(namespace: str, supervisor: str) -> str | None:
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(KV_KEY, namespace=_kv_namespace(namespace, supervisor))
    return raw.decode() if raw else None


def check_cli_token(digest: str | None, home: str | None, what: str) -> None:
    """Raise ``Forbidden``/``Unauthorized`` unless this shell holds the system's API token (``digest``;
    None: the system published none, e.g. no control plane was started, and there is nothing to check)."""
    if not digest:
        return
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        if not hmac.compare_digest(token_digest(env), digest):
            raise Forbidden(f"{what}: ${TOKEN_ENV} is not this system's API token (unset it to use "
                            f"{token_path(home or '$MMATS_HOME')}, or set the right one)")
        return
    path = token_path(home) if home else None
    try:
        token = path.read_text().strip() if path is not None else ""
    except OSError:
        token = ""
    if not token or not hmac.compare_digest(token_digest(token), digest):
        raise Unauthorized(f"{what} needs the API token: set ${TOKEN_ENV} (the system's token file "
                           f"{path or '<home>/secrets/api_token'} is not readable here or does not match)")
