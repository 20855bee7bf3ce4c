"""The CLI's one error boundary: what a user did wrong becomes one ``error: ...`` line and exit status 2.

Every command runs inside ``run_guarded``. A user mistake is an ``MmatsError`` (bad value, config, data,
unknown strategy, the control service's typed problems), an ``OSError`` on a path the user named (a
directory where a file is wanted, a path under a file, a folder that cannot be written, a missing file),
or a pydantic validation error; an error raised inside a Ray actor or task arrives wrapped in
``RayTaskError`` and is unwrapped to its cause first. Anything else is a bug: one line saying so (exit
status 1), and ``mmats --debug ...`` shows the traceback.

``check_output_paths`` refuses an unusable output path (``--json``, ``--report``, ``--audit``, ``--html``,
``--pdf``, ``--output``, ``--results``) before a long run starts, naming the flag.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from mmats.errors import ConfigError, MmatsError

USER_ERROR = 2
BUG = 1
INTERRUPTED = 130

#: argparse ``dest`` -> the flag a user typed, for every option that names a file the command writes.
OUTPUT_FLAGS = {"json": "--json", "report": "--report", "audit": "--audit", "html": "--html", "pdf": "--pdf",
                "output": "--output", "results": "--results"}


def unwrap(exc: BaseException) -> BaseException:
    """The error a Ray actor or task raised, out of its ``RayTaskError`` wrapper(s)."""
    ray = sys.modules.get("ray")  # no Ray imported: nothing can be wrapped
    wrapper = getattr(getattr(ray, "exceptions", None), "RayTaskError", None)
    for _ in range(10):
        if wrapper is None or not isinstance(exc, wrapper):
            return exc
        cause = getattr(exc, "cause", None)
        if not isinstance(cause, BaseException):
            return exc
        exc = cause
    return exc


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _os_message(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else ""
    what = {
        errno.EISDIR: "is a folder, a file path is needed",
        errno.ENOTDIR: "a part of this path is a file, not a folder",
        errno.EEXIST: "a file is in the way (a folder is needed there)",
        errno.ENOENT: "no such file or folder",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device",
    }.get(exc.errno or -1, exc.strerror or type(exc).__name__)
    return f"{where}: {what}" if where else what


def describe(exc: BaseException) -> str | None:
    """The one line for a user mistake, or None when ``exc`` is a bug."""
    exc = unwrap(exc)
    if isinstance(exc, MmatsError):
        return _first_line(str(exc)) or type(exc).__name__
    if isinstance(exc, OSError) and not isinstance(exc, (ConnectionError, TimeoutError)):
        return _os_message(exc)
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover - pydantic is a dependency
        ValidationError = ()  # type: ignore[assignment,misc]
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ()))
        return f"{loc}: {err.get('msg')}" if loc else str(err.get("msg"))
    name = type(exc).__name__
    if name in ("RayActorError", "ActorDiedError", "ActorUnavailableError"):
        return f"the actor system did not answer ({name}): it may be restarting, retry in a few seconds"
    if name == "GetTimeoutError":
        return "the actor system did not answer in time: retry in a few seconds"
    return None


def check_output_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output path that cannot be written (naming the flag)."""
    for dest, flag in OUTPUT_FLAGS.items():
        value = getattr(args, dest, None)
        if not isinstance(value, str) or not value:
            continue
        check_writable(flag, value)


def check_writable(flag: str, value: str) -> None:
    path = Path(value)
    if path.is_dir():
        raise ConfigError(f"{flag} {value}: is a folder, give a file path (e.g. {path / 'out'}"
                          f"{Path(value).suffix or _suffix(flag)})")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{flag} {value}: the file exists and cannot be written")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{flag} {value}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {value}: cannot write in {parent} (permission denied)")
    try:  # some folders refuse new files whatever their mode says (/proc, a read-only mount)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {value}: cannot create files in {parent} ({exc.strerror})") from None


def _suffix(flag: str) -> str:
    return {"--json": ".json", "--report": ".html", "--html": ".html", "--pdf": ".pdf", "--audit": ".jsonl",
            "--results": ".jsonl"}.get(flag, "")


def run_guarded(func: Callable[[argparse.Namespace], int], args: argparse.Namespace, debug: bool) -> int:
    """Run one command: its exit status, or one ``error:`` line on stderr (see the module doc)."""
    try:
        check_output_paths(args)
        return int(func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        line = describe(exc)
        if line is not None:
            print(f"error: {line}", file=sys.stderr)
            return USER_ERROR
        cause = unwrap(exc)
        print(f"error: internal error ({type(cause).__name__}: {_first_line(str(cause))[:300]}); this is a bug, "
              "run again with `mmats --debug ...` for the traceback", file=sys.stderr)
        return BUG
