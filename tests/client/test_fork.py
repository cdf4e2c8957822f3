"""A FeedbackBatcher made before a fork (gunicorn's or uwsgi's preload) works in the child: the
child sends from a thread of its own, over connections of its own, and its books hold only what
it added there; the rewards the parent had buffered stay the parent's to send."""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from bandit.client import Client
from tests.client.conftest import counted, decisions
from tests.client.stalling import StallingServer


def in_a_child(work: Callable[[], Any], meanwhile: Callable[[], object] = lambda: None, timeout_s: float = 20) -> Any:
    """What `work` returns when run in a forked child (as JSON over a pipe); the parent calls
    `meanwhile` again and again until the child answers. The child never returns into pytest."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(read_end)
            try:
                report = {"result": work()}
            except BaseException as error:
                report = {"error": f"{type(error).__name__}: {error}"}
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            meanwhile()
            if select.select([read_end], [], [], 0.01)[0]:
                if not (chunk := os.read(read_end, 65536)):
                    break
                chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
            raise TimeoutError(f"the child did not answer within {timeout_s} s")
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    report = json.loads(b"".join(chunks))
    assert "error" not in report, report["error"]
    return report["result"]


def test_a_batcher_made_before_a_fork_sends_from_the_child_and_each_process_keeps_its_own(
    client: Client, experiment: str
) -> None:
    ids = decisions(client, experiment, 30)  # the client has a connection open, kept alive, at the fork
    parents, childs, parents_later = ids[:10], ids[10:20], ids[20:]
    batcher = client.batcher(max_delay_s=60)
    for decision in parents:
        batcher.add(decision, 1)  # still buffered at the fork: the parent's to send

    def child() -> dict[str, Any]:
        taken = [batcher.add(decision, 1) for decision in childs]
        flushed = batcher.flush(timeout_s=10)
        return {"taken": taken, "flushed": flushed, "final": asdict(batcher.close(timeout_s=5))}

    # Meanwhile the parent keeps using its connection: a child sending on it too would garble both.
    report = in_a_child(child, meanwhile=lambda: client.get_experiment(experiment))
    assert report["taken"] == [True] * 10 and report["flushed"], report
    final = report["final"]
    assert (final["added"], final["accepted"], final["duplicate"], final["pending"]) == (10, 10, 0, 0), final

    for decision in parents_later:
        batcher.add(decision, 1)
    mine = batcher.close()
    assert (mine.added, mine.accepted, mine.duplicate, mine.pending) == (20, 20, 0, 0), mine
    assert counted(client, experiment)["rewards"] == 30


def test_the_child_sends_on_connections_of_its_own() -> None:
    with StallingServer(answer_after_s={"/invoke/any/predict": 0}) as server, Client(server.url) as client:
        server.answer_held()  # feedback answered at once
        assert client.invoke("any", "predict").status_code == 200  # a connection kept alive in the pool
        batcher = client.batcher(max_delay_s=60)

        def child() -> bool:
            batcher.add("a-decision", 1)
            return batcher.flush(timeout_s=10)

        assert in_a_child(child)
        assert client.invoke("any", "predict").status_code == 200  # the parent's connection, still its own
        parents, childs, parents_again = server.ports
        assert parents == parents_again and childs != parents, server.ports
        batcher.close()


def test_a_fork_while_another_thread_holds_the_batchers_lock_leaves_the_child_a_working_one(
    client: Client, experiment: str
) -> None:
    # As when the fork lands while the sender thread books an answer: the child's copy of the lock
    # is held by a thread that does not exist there.
    decision = decisions(client, experiment, 1)[0]
    batcher = client.batcher(max_delay_s=60)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with batcher._lock:
            holding.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait()
    try:
        report = in_a_child(
            lambda: [batcher.add(decision, 1), batcher.flush(timeout_s=10), batcher.counters.accepted], timeout_s=15
        )
    finally:
        release.set()
        holder.join()
    assert report == [True, True, 1]
    assert batcher.close().added == 0
    assert counted(client, experiment)["rewards"] == 1


def test_a_child_that_never_uses_them_gets_no_thread_and_no_new_pool(client: Client, experiment: str) -> None:
    # Most children of a process never use its batcher (a multiprocessing worker, a subprocess's
    # preexec_fn): nothing may run in them at the fork, while locks the parent's threads held may still look held.
    parents, childs = decisions(client, experiment, 2)
    batcher = client.batcher(max_delay_s=60)
    batcher.add(parents, 1)  # the parent's sender thread is running at the fork
    pool = client._http

    def child() -> dict[str, Any]:
        untouched = [threading.active_count(), client._http is pool, batcher.closed, batcher.counters.added]
        still = [threading.active_count(), client._http is pool]
        batcher.add(childs, 1)
        flushed = batcher.flush(timeout_s=10)
        return {"untouched": untouched + still, "used": [threading.active_count(), client._http is pool, flushed]}

    report = in_a_child(child)
    assert report["untouched"] == [1, True, False, 0, 1, True], report  # reading its counters uses nothing
    assert report["used"] == [2, False, True], report  # on first use: a sender thread and a pool of its own
    assert batcher.close().accepted == 1
    assert counted(client, experiment)["rewards"] == 2
