"""Group commit: an actor's journal written by its own thread, in order, one commit for everything that
queued while the previous commit ran.

An actor that commits every message's records on its message thread spends the commit on each message
(milliseconds, more when other processes hold the database's write lock) and its mailbox backs up
behind it. Here the message thread decides, hands the records to the writer and takes the next
message; the writer commits what queued meanwhile as one transaction and only then releases what the
records permit (orders to the router, answers to strategies), in the order the batches were decided.
Under light load a batch is committed alone and at once; under heavy load batches grow by themselves,
as the senders' batches do (``mmats.engine.batching``).

"Written before it takes effect" holds: nothing of a batch is released before its commit returns. A
crash loses at most the batches still queued, none of which has acted. Pure: a thread and a
condition, no Ray and no database; the actor passes the commit and the release as functions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

P = TypeVar("P")

log = logging.getLogger(__name__)


class GroupCommit(Generic[P]):
    """``commit(batches)`` writes the records of several decided batches in one transaction;
    ``release(batches)`` then lets them act; ``fail(batches, error)`` when the commit raised (nothing
    of those batches may act). All three run on the writer thread, in the order ``submit`` was called."""

    def __init__(self, commit: Callable[[list[P]], None], release: Callable[[list[P]], None],
                 fail: Callable[[list[P], Exception], None], name: str) -> None:
        self._commit = commit
        self._release = release
        self._fail = fail
        self._cond = threading.Condition()
        self._queue: list[P] = []
        self._writing = 0
        self.commits = 0
        self.batches = 0
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, batch: P) -> None:
        with self._cond:
            self._queue.append(batch)
            self._cond.notify_all()

    def idle(self) -> bool:
        """Nothing queued or being written: a batch with no records may act at once without overtaking
        one that waits for its commit."""
        with self._cond:
            return not self._queue and not self._writing

    def drain(self, timeout_s: float) -> bool:
        """Wait until everything submitted so far is committed and released (False on timeout). Never call
        it holding a lock that ``release`` takes."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._queue or self._writing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    @property
    def batches_per_commit(self) -> float:
        return self.batches / self.commits if self.commits else 0.0

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                batches, self._queue = self._queue, []
                self._writing = len(batches)
            try:
                try:
                    self._commit(batches)
                except Exception as exc:  # the database refused: nothing of these batches acts
                    log.exception("group commit of %d batches failed", len(batches))
                    self._fail(batches, exc)
                else:
                    self.commits += 1
                    self.batches += len(batches)
                    self._release(batches)
            except Exception:  # a bug in release/fail must not stop the writer: later batches still go
                log.exception("releasing %d committed batches failed", len(batches))
            finally:
                with self._cond:
                    self._writing = 0
                    self._cond.notify_all()
