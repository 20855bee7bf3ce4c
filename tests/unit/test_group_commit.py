"""The journal writer's policy: in order, one commit for what queued meanwhile, nothing released
before (or without) its commit."""

from __future__ import annotations

import threading

from mmats.engine.group_commit import GroupCommit


class Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a commit started
        self.commits: list[list[int]] = []
        self.released: list[int] = []
        self.failed: list[int] = []
        self.fail_on = fail_on

    def commit(self, batches: list[int]) -> None:
        self.entered.set()
        self.gate.wait(5)
        if self.fail_on in batches:
            raise RuntimeError("database refused")
        self.commits.append(list(batches))

    def release(self, batches: list[int]) -> None:
        assert batches in self.commits  # never before its own commit
        self.released += batches

    def fail(self, batches: list[int], error: Exception) -> None:
        assert "refused" in str(error)
        self.failed += batches


def test_idle_writer_commits_one_batch_at_once() -> None:
    r = Recorder()
    gc = GroupCommit(r.commit, r.release, r.fail, "t")
    gc.submit(1)
    assert gc.drain(5)
    assert r.commits == [[1]] and r.released == [1] and gc.idle()


def test_batches_that_queue_during_a_commit_go_in_one_commit_in_order() -> None:
    r = Recorder()
    r.gate.clear()  # the first commit is slow
    gc = GroupCommit(r.commit, r.release, r.fail, "t")
    gc.submit(1)
    assert r.entered.wait(5)  # the writer took batch 1
    for i in (2, 3, 4):
        gc.submit(i)
    assert not gc.idle() and not gc.drain(0.05)  # nothing released while the commit runs
    assert r.released == []
    r.gate.set()
    assert gc.drain(5)
    assert r.commits == [[1], [2, 3, 4]]
    assert r.released == [1, 2, 3, 4]
    assert gc.batches_per_commit == 2.0


def test_a_failed_commit_releases_nothing_of_it_and_the_writer_goes_on() -> None:
    r = Recorder(fail_on=2)
    r.gate.clear()
    gc = GroupCommit(r.commit, r.release, r.fail, "t")
    gc.submit(1)
    assert r.entered.wait(5)
    gc.submit(2)
    r.gate.set()
    assert gc.drain(5)
    assert r.failed == [2] and r.released == [1]
    gc.submit(5)
    assert gc.drain(5)
    assert r.released == [1, 5]
