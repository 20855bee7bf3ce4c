"""Control calls that do not queue behind the message path.

A Ray actor runs its calls one at a time in arrival order, so under load a kill switch or a status
read would wait behind every bar and signal already in the mailbox (seconds, when the system lags).
The gatekeeper, the router and the portfolio therefore run their controls and reads in a separate
concurrency group (its own thread) and guard their state with one lock per actor: a control call waits
at most for the one message being handled, never for the backlog.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

CONTROL = "control"
GROUPS = {CONTROL: 1}

F = TypeVar("F", bound=Callable[..., Any])


def locked(fn: F) -> F:
    """Run the method holding the actor's ``self._lock`` (an ``RLock``)."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
