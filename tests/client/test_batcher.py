"""FeedbackBatcher against a real service: by size, by age, on close, from threads, once each,
through lost replies, with refusals reported and a full buffer dropping."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from bandit.cli.local_redis import free_port
from bandit.client import Backoff, Client, FeedbackFailure
from tests.client.conftest import FEEDBACK_TOKEN, counted, decisions
from tests.client.transports import LosingTransport
from tests.conftest import experiment_body
from tests.servers import ADMIN_TOKEN, ROOT, ModelServers, ServiceProcess, wait_until

#: Retries in these tests come quickly, so a test that waits on them stays short.
QUICK = Backoff(initial_s=0.02, max_s=0.1)


def test_batches_go_by_size_and_the_rest_waits_for_its_age(client: Client, experiment: str) -> None:
    ids = decisions(client, experiment, 120)
    with client.batcher(max_items=50, max_delay_s=60) as batcher:
        for decision in ids:
            assert batcher.add(decision, 1)
        wait_until(lambda: batcher.counters.sent == 100, 5, "two full batches sent")
        time.sleep(0.3)
        left = batcher.counters
        assert (left.sent, left.pending) == (100, 20), left  # not yet 60 s old, not a full batch
    final = batcher.counters  # closing sent the rest
    assert (final.accepted, final.pending, final.failed, final.retries) == (120, 0, 0, 0), final
    assert counted(client, experiment)["rewards"] == 120


def test_a_batch_goes_when_its_oldest_reward_is_max_delay_old(client: Client, experiment: str) -> None:
    ids = decisions(client, experiment, 30)
    with client.batcher(max_items=1000, max_delay_s=0.3) as batcher:
        started = time.monotonic()
        for decision in ids:
            batcher.add(decision, 0.5)
        wait_until(lambda: batcher.counters.accepted == 30, 5, "the batch sent by its age")
        assert time.monotonic() - started >= 0.3
    books = counted(client, experiment)
    assert books["rewards"] == 30 and books["reward_sum"] == pytest.approx(15)


def test_close_sends_what_is_left(client: Client, experiment: str) -> None:
    ids = decisions(client, experiment, 150)
    batcher = client.batcher(max_items=1000, max_delay_s=60)
    for decision in ids:
        batcher.add(decision, 1)
    assert batcher.counters.pending == 150 and counted(client, experiment)["rewards"] == 0
    final = batcher.close()
    assert (final.added, final.sent, final.accepted, final.pending) == (150, 150, 150, 0), final
    assert counted(client, experiment)["rewards"] == 150
    with pytest.raises(RuntimeError, match="closed"):
        batcher.add(ids[0], 1)


def test_closing_the_client_closes_its_batchers_first(service: ServiceProcess, experiment: str) -> None:
    with Client(service.url, token=ADMIN_TOKEN) as client:
        ids = decisions(client, experiment, 20)
        batcher = client.batcher(max_delay_s=60)
        for decision in ids:
            batcher.add(decision, 1)
    assert batcher.closed and batcher.counters.accepted == 20
    with Client(service.url, token=ADMIN_TOKEN) as client:
        assert counted(client, experiment)["rewards"] == 20


def test_rewards_left_in_a_batcher_at_exit_are_sent(client: Client, experiment: str) -> None:
    ids = decisions(client, experiment, 25)
    script = (
        "import sys; from bandit.client import Client\n"
        "batcher = Client(sys.argv[1]).batcher(max_delay_s=60)\n"
        "for decision in sys.argv[2:]: batcher.add(decision, 1)\n"
        # No close: the interpreter exits with the rewards still buffered.
    )
    subprocess.run([sys.executable, "-c", script, client.url, *ids], check=True, cwd=ROOT, timeout=30)
    assert counted(client, experiment)["rewards"] == 25


def test_rewards_from_many_threads_each_count_once(client: Client, experiment: str) -> None:
    ids = decisions(client, experiment, 200)
    with client.batcher(max_items=64, max_delay_s=0.05) as batcher:
        # Every thread adds every reward: 4 × 200 adds, 200 decisions.
        threads = [threading.Thread(target=lambda: [batcher.add(d, 1) for d in ids]) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert batcher.flush(timeout_s=10)
        flushed = batcher.counters
    assert (flushed.added, flushed.accepted, flushed.duplicate, flushed.pending) == (800, 200, 600, 0), flushed
    assert counted(client, experiment)["rewards"] == 200


def test_flush_sends_now_and_waits(client: Client, experiment: str) -> None:
    first, second = decisions(client, experiment, 2)
    with client.batcher(max_items=1000, max_delay_s=60) as batcher:
        batcher.add(first, 1)
        assert batcher.flush(timeout_s=5)
        assert batcher.counters.accepted == 1 and counted(client, experiment)["rewards"] == 1
        batcher.add(first, 1)  # again: the service counts it once
        batcher.add(second, 0)
        assert batcher.flush(timeout_s=5)
        assert (batcher.counters.accepted, batcher.counters.duplicate) == (2, 1)
    assert counted(client, experiment)["rewards"] == 2


def test_a_batch_whose_reply_was_lost_is_sent_again_and_counts_once(service: ServiceProcess, experiment: str) -> None:
    transport = LosingTransport(lose=2)
    with Client(service.url, token=ADMIN_TOKEN, transport=transport) as client:
        ids = decisions(client, experiment, 40)
        with client.batcher(max_items=1000, max_delay_s=60, backoff=QUICK, seed=7) as batcher:
            for decision in ids:
                batcher.add(decision, 1)
            assert batcher.flush(timeout_s=10)
            sent = batcher.counters
        # Counted on the first post; the two answers lost; the third post finds them all counted.
        assert (sent.retries, sent.accepted, sent.duplicate, sent.failed) == (2, 0, 40, 0), sent
        assert sent.last_retry_reason is not None and "reply was lost" in sent.last_retry_reason
        assert counted(client, experiment)["rewards"] == 40


def test_refused_rewards_are_reported_and_never_retried(client: Client, experiment: str) -> None:
    good, out_of_bounds = decisions(client, experiment, 2)
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    reported: list[FeedbackFailure] = []
    with client.batcher(max_delay_s=60, on_error=reported.extend) as batcher:
        for decision, value in [(good, 1), (forged, 1), (out_of_bounds, 7)]:
            batcher.add(decision, value)
        assert batcher.flush(timeout_s=5)
        counters = batcher.counters
    assert (counters.sent, counters.accepted, counters.rejected, counters.failed, counters.retries) == (3, 1, 2, 0, 0)
    assert [(f.decision, f.status, f.acknowledged) for f in reported] == [
        (forged, 403, True),
        (out_of_bounds, 422, True),
    ]
    assert "bounds" in reported[1].reason
    assert counted(client, experiment)["rewards"] == 1


def test_bad_rewards_are_refused_at_add(client: Client) -> None:
    with client.batcher() as batcher:
        with pytest.raises(ValueError, match="finite"):
            batcher.add("a-decision", float("inf"))
        with pytest.raises(ValueError, match="at most 256"):
            batcher.add("d" * 257, 1)
        assert batcher.counters.added == 0
    with pytest.raises(ValueError, match="max_items must be 1 to 1000"):
        client.batcher(max_items=1001)


@pytest.mark.parametrize(("token", "status"), [("wrong-token", 403), ("", 401)])
def test_a_refused_token_fails_the_batch_for_good(
    own_service: ServiceProcess, models: ModelServers, name: str, token: str, status: int
) -> None:
    with Client(own_service.url, token=ADMIN_TOKEN, feedback_token=FEEDBACK_TOKEN) as owner:
        owner.create_experiment(experiment_body(name, models))
        ids = decisions(owner, name, 5)
    reported: list[FeedbackFailure] = []
    with (
        Client(own_service.url, token="", feedback_token=token) as client,
        client.batcher(max_delay_s=60, backoff=QUICK, on_error=reported.extend) as batcher,
    ):
        for decision in ids:
            batcher.add(decision, 1)
        assert batcher.flush(timeout_s=5)
        counters = batcher.counters
    assert (counters.failed, counters.sent, counters.retries, counters.pending) == (5, 0, 0, 0), counters
    assert {f.status for f in reported} == {status} and len(reported) == 5
    with Client(own_service.url, token=ADMIN_TOKEN, feedback_token=FEEDBACK_TOKEN) as owner:
        assert counted(owner, name)["rewards"] == 0
        assert owner.rewards([(ids[0], 1)]).accepted == 1  # the right token is taken


def test_a_batch_too_large_for_the_service_is_sent_again_in_halves(
    own_service: ServiceProcess, models: ModelServers, name: str
) -> None:
    # own_service takes API bodies up to 16 KiB: 300 rewards (~35 KB) are refused with 413 as one.
    with Client(own_service.url, token=ADMIN_TOKEN, feedback_token=FEEDBACK_TOKEN) as client:
        client.create_experiment(experiment_body(name, models))
        ids = decisions(client, name, 300)
        with client.batcher(max_items=300, max_delay_s=60) as batcher:
            for decision in ids:
                batcher.add(decision, 1)
            assert batcher.flush(timeout_s=10)
            counters = batcher.counters
        assert (counters.accepted, counters.failed) == (300, 0), counters
        assert counters.retries >= 1 and "413" in str(counters.last_retry_reason)
        assert counted(client, name)["rewards"] == 300


def test_a_full_buffer_drops_new_rewards_and_close_gives_up_at_its_deadline() -> None:
    reported: list[FeedbackFailure] = []
    with Client(f"http://127.0.0.1:{free_port()}", timeout=1) as client:
        batcher = client.batcher(max_items=10, max_buffered=10, max_delay_s=60, backoff=QUICK, on_error=reported.extend)
        for index in range(10):
            assert batcher.add(f"decision-{index}", 1)
        wait_until(lambda: batcher.counters.retries >= 1, 5, "the first batch in flight, being retried")
        accepted = [batcher.add(f"decision-{index}", 1) for index in range(10, 22)]
        assert accepted == [True] * 10 + [False] * 2  # the buffer holds 10 besides the batch in flight
        counters = batcher.counters
        assert (counters.added, counters.pending, counters.dropped, counters.sent) == (20, 20, 2, 0), counters
        assert "unreachable" in str(counters.last_retry_reason)
        started = time.monotonic()
        final = batcher.close(timeout_s=0.5)
        assert time.monotonic() - started < 2
    assert (final.failed, final.pending, final.sent) == (20, 0, 0), final
    assert len(reported) == 20 and {f.status for f in reported} == {None}
    assert "deadline" in reported[0].reason
