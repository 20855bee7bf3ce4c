"""MMATS control plane on Ray Serve: the HTTP API and the dashboard over the ``control`` service.

Start it
  mmats up                                    # the actor system AND this app on 127.0.0.1:8000
  serve run serve_app:app                     # against a system already started by `mmats up`
  serve run serve_app:build_app supervisor=mmats_supervisor namespace=mmats host=127.0.0.1

The API lives under ``/api/v1`` (OpenAPI at ``/docs`` and ``/openapi.json``); the dashboard at ``/``.
Reference: docs/http-api.md. Everything but the Serve wiring is in ``control/``: the routes
(``control/routes/``) call one ``SystemClient`` (``control/service.py``), the same one the ``mmats`` CLI
uses; errors are typed (``control/problems.py``); ``control/hub.py`` polls the system for the event stream.

Security: mutating endpoints need ``Authorization: Bearer <token>``; when the app is bound to a
non-loopback address every API endpoint does. The replica only knows the SHA-256 of the token.
"""

import os
from pathlib import Path
from typing import Any

from ray import serve

from control.app import fastapi_app
from control.auth import configure_auth, is_loopback, load_or_create_token, token_digest
from control.hub import Hub
from control.routes.deps import bind
from control.service import SystemClient
from control.transport import NAMESPACE, SUPERVISOR, LogBuffer
from control.views import newest_first

ROOT = Path(__file__).resolve().parent

__all__ = ["ControlPlane", "build_app", "is_loopback", "load_or_create_token", "make_app", "newest_first",
           "token_digest"]


@serve.deployment(num_replicas=1, max_ongoing_requests=64, ray_actor_options={"num_cpus": 0},
                  health_check_period_s=10)
@serve.ingress(fastapi_app)
class ControlPlane:
    """The replica: one ``SystemClient`` for the system named ``supervisor``, one event hub, the token digest."""

    def __init__(self, supervisor: str = SUPERVISOR, namespace: str = NAMESPACE, token_sha256: str = "",
                 auth_all: bool = True, poll_s: float = 0.5) -> None:
        configure_auth(token_sha256, auth_all)
        client = SystemClient(supervisor, namespace, LogBuffer())
        bind(Hub(client, poll_s))
        client.logs.add("INFO", "api", f"control plane started for {supervisor} (namespace {namespace}); "
                                       f"{'every endpoint' if auth_all or not token_sha256 else 'mutations'} "
                                       "need the API token")


def make_app(supervisor: str = SUPERVISOR, namespace: str = NAMESPACE, token_sha256: str = "",
             auth_all: bool = False, poll_s: float = 0.5) -> Any:
    """The bound application (what ``serve.run`` takes). ``auth_all``: every endpoint needs the token."""
    # serve_app.py is a top-level file, not part of the installed packages: replicas import it from here.
    pythonpath = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH", "")) if x)
    options: dict[str, Any] = {"num_cpus": 0, "runtime_env": {"env_vars": {"PYTHONPATH": pythonpath}}}
    deployment: Any = ControlPlane
    return deployment.options(ray_actor_options=options).bind(supervisor, namespace, token_sha256, auth_all, poll_s)


def build_app(args: dict[str, str] | None = None) -> Any:
    """``serve run serve_app:build_app [supervisor=..] [namespace=..] [host=..] [home=..]``.

    Resolves the API token (``$MMATS_API_TOKEN`` or ``<home>/secrets/api_token``, created and printed once).
    ``host`` says where Serve is bound: a non-loopback host makes every endpoint require the token.
    """
    args = dict(args or {})
    home = args.get("home") or os.environ.get("MMATS_HOME") or "var"
    host = args.get("host") or os.environ.get("MMATS_API_HOST") or "127.0.0.1"
    token, created, where = load_or_create_token(home)
    if created:
        print(f"MMATS API token (shown once; stored in {where}, mode 0600):\n  {token}", flush=True)
    auth_all = not is_loopback(host) or args.get("auth_all", "").lower() in ("1", "true", "yes")
    return make_app(args.get("supervisor", SUPERVISOR), args.get("namespace", NAMESPACE), token_digest(token),
                    auth_all, float(args.get("poll_s", 0.5)))


def __getattr__(name: str) -> Any:
    """``serve run serve_app:app`` builds the app on first access (importing this module has no side effect)."""
    if name == "app":
        return build_app({})
    raise AttributeError(name)
