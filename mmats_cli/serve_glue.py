"""Start the control plane (``serve_app.py``: HTTP API + dashboard over ``control/``) on Ray Serve from ``mmats up``.

``serve_app.py`` is a top-level file of the source checkout (the design's layout), not part of the
installed packages, so it is imported from the repository root next to this package.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mmats.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def start_control_plane(host: str, port: int, home: str, supervisor: str = "mmats_supervisor",
                        namespace: str = "mmats") -> list[str]:
    """Start Serve on ``host:port`` with the app in front of ``supervisor``; lines to print for the user.

    The API token is ``$MMATS_API_TOKEN`` or ``<home>/secrets/api_token``: generated (0600) on the first
    start and shown in the returned lines that one time only.
    """
    if not (ROOT / "serve_app.py").is_file():
        raise ConfigError(f"serve_app.py not found in {ROOT}: the control plane runs from a source checkout")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from ray import serve

    import serve_app
    from control.auth import is_loopback, load_or_create_token, publish_digest, token_digest

    token, created, where = load_or_create_token(home)
    loopback = is_loopback(host)
    # The dashboard polls every second: keep per-request access lines off the `mmats up` console.
    quiet = {"log_level": "WARNING", "enable_access_log": False}
    serve.start(http_options={"host": host, "port": port}, logging_config=quiet)
    serve.run(serve_app.make_app(supervisor, namespace, token_digest(token), auth_all=not loopback),
              name="mmats", route_prefix="/", logging_config=quiet)
    publish_digest(token_digest(token), namespace, supervisor)  # the CLI's mutating commands check it too
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    lines = [f"dashboard: {base}/   API: {base}/api/v1   OpenAPI: {base}/docs"]
    if created:
        lines.append(f"API token (shown once; stored in {where}, mode 0600): {token}")
    else:
        lines.append(f"API token: see {where}")
    lines.append("the API token is needed for every action, over HTTP and in the CLI ($MMATS_API_TOKEN, else "
                 "the token file above)" if loopback else
                 f"bound to {host} (not loopback): every endpoint needs the API token; CLI actions need it too")
    return lines
