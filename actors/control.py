"""Control calls that do not queue behind the message path.

A Ray actor runs its calls one at a time in arrival order, so under load a kill switch or a status
read would wait behind every bar and signal already in the mailbox (seconds, when the system lags).
The gatekeeper, the router and the portfolio therefore run their controls and reads in a separate
concurrency group (its own thread) and guard their state with one lock per actor: a control call waits
at most for the one message being handled, never for the backlog.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

CONTROL = "control"
GROUPS = {CONTROL: 1}

F = TypeVar("F", bound=Callable[..., Any])


CONTROL_SWITCH_INTERVAL_S = 0.0005


def control_lock() -> threading.RLock:
    """The lock an actor's message and control threads share, and a short GIL switch interval.

    Python hands the GIL to a waiting thread only every ``sys.getswitchinterval()`` (5 ms by default)
    while another thread runs Python code, so a control call (a HARD flatten) that needs a few hundred
    GIL hand-offs waited tens of milliseconds for them behind the busy message thread. Half a
    millisecond costs the message thread little and bounds that wait."""
    sys.setswitchinterval(CONTROL_SWITCH_INTERVAL_S)
    return threading.RLock()


def locked(fn: F) -> F:
    """Run the method holding the actor's ``self._lock`` (an ``RLock``)."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def when_ready(ref: Any, apply: Callable[[Any], None], what: str) -> None:
    """Apply the result of ``ref`` when it arrives, without waiting for it.

    A restarted actor re-wires itself from its peers (the supervisor's or the gatekeeper's handles). It
    must not wait for them in ``__init__``: the peer may be the very caller waiting for this actor to
    come back (a status read, a HARD flatten), and both would wait forever. ``apply`` runs on Ray's
    result thread, so it only assigns (it never takes the actor's lock)."""

    def done(fut: Any) -> None:
        try:
            apply(fut.result())
        except Exception as exc:  # the peer is gone too: its own restart re-wires everything
            logging.getLogger("mmats.control").error("re-wiring after a restart (%s) failed: %r", what, exc)

    ref.future().add_done_callback(done)


def was_restarted() -> bool:
    """Whether Ray restarted the calling actor. Ray's own check reads an actor id property it has
    deprecated, and its warning would reach the user's console from every actor started."""
    import ray

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


def ask_supervisor_to_rewire(peers: Any, node: str) -> None:
    """After a Ray restart, ask the supervisor to re-apply this actor's wiring (``peers``: an
    ``mmats.engine.actor_settings.Peers``). Sent, never awaited: the supervisor may be the very caller
    waiting for this actor to come back. Without a supervisor (actors built by hand) nothing happens."""
    import ray

    if peers.supervisor is None or not was_restarted():
        return
    try:
        ray.get_actor(peers.supervisor, namespace=peers.namespace).rewire.remote(node)
    except ValueError:
        logging.getLogger("mmats.control").error("%s restarted, but supervisor %s is gone: wiring as built",
                                                 node, peers.supervisor)
