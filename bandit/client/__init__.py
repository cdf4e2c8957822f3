"""The client library of mab: invoke experiments, report rewards, manage experiments.

It imports only the standard library, httpx and msgspec (never numpy, scipy, Litestar or the
service's own packages), so an application server can use it cheaply::

    from bandit.client import Client

    with Client("http://mab:8000", token=ADMIN, feedback_token=FEEDBACK) as mab:
        answer = mab.invoke("shop-ranker", "predict", json={"user": 42}, unit="user-42")
        answer.json()                      # the model's answer, as it sent it
        mab.reward(answer.decision, 1.0)   # later: the outcome of that decision

        with mab.batcher() as rewards:     # many rewards: buffered, sent in batches, retried
            rewards.add(answer.decision, 1.0)

`AsyncClient` and `AsyncFeedbackBatcher` are the same for asyncio (`async with`, `await`,
`aclose()`; `AsyncFeedbackBatcher.add` is a plain call, made from the loop).

Configuration
    `url` defaults to `BANDIT_URL`, else http://127.0.0.1:8000; `token` (the admin token, for
    management) to `BANDIT_ADMIN_TOKEN`; `feedback_token` to `BANDIT_FEEDBACK_TOKEN`, else the
    admin token (the service accepts either for feedback). No token, no `Authorization`
    header. Tokens are sent only to the management API and `/feedback`, never on `invoke`,
    whose headers reach the models. A malformed URL, name, reward... is a ValueError naming it,
    raised before anything is sent.

Errors
    `ApiError` (a `ClientError`): the service refused, with `status`, `detail` (its own
    explanation) and `body`, plus `retry_after_s` when it said when to retry (503 while its Redis
    is away). `Unreachable` (a `ClientError`): no answer at all (connection refused or reset,
    timeout, DNS). The client never retries a call by itself, except in the batchers: a
    management call may not be safe to repeat (rollback goes one step further each time).

Management
    `list_experiments`, `get_experiment`, `create_experiment`, `update_experiment` (PATCH),
    `delete_experiment`, `pause`, `resume`, `reset`, `rollback`, `promote(name, arm=None)`,
    `stats`: each returns the service's JSON as it answered (dicts and lists of dicts, not
    types of this library), so fields added to the API in later releases reach callers
    without a new client; any non-2xx answer raises ApiError (401 no token, 403 wrong token,
    404, 409, 422 naming the field...).

Invoke
    `invoke(experiment, path, method=..., json=... | content=..., headers=..., unit=...,
    params=...)` returns an `Invocation` for every HTTP answer and raises only `Unreachable`
    (and ValueError for bad arguments). An application decides what a failed prediction means
    to it, so nothing is raised for one:

    - `decision`, `arm`, `experiment`: the proxy's X-Bandit-* headers. `decision` is set only
      when a model version answered (whatever its status), so `served` tells whether there is
      a decision to reward; `ok` is served with a 2xx.
    - an answer of mab itself (404 unknown experiment, 503 + Retry-After when no arm has room,
      502/504 when the chosen arm failed, 400/408/413/431 for a request it will not forward)
      has no decision (`served` is False; `arm` may name the arm that failed); its JSON
      `detail` says why. `raise_for_status()` turns any answer that is not `ok` into ApiError.
    - `unit` is sent as `X-Bandit-Unit`: the same unit stays on the same version.
    - the body is read whole (the library is for request/response models, not streams).

Rewards
    `reward(decision, value)` and `rewards([(decision, value), ...])` (one POST, at most 1000)
    return a `FeedbackResult` (`accepted`, `duplicate`, `rejected`, `errors`: a list of
    `{"index", "status", "reason"}`). Both post a batch, so a reward the service refuses (403
    forged id, 410 past the feedback window, 404 arm or experiment gone, 422 outside the
    reward bounds) is reported in the result, not raised; ApiError is raised only when the
    request as a whole is refused (401/403 token, 503 Redis away). The same reward sent again
    is a `duplicate`: the service counts each decision once.

The batchers (`client.batcher(max_items=500, max_delay_s=1.0, ...)`)
    `add(decision, value)` buffers a reward (thread-safe; it never waits on the network). A
    background thread (sync) or task (async) posts a batch when `max_items` (at most 1000, the
    service's limit) are buffered, when the oldest is `max_delay_s` old, on `flush()` (send
    now and wait, optionally up to a timeout) and on `close(timeout_s=10)` (send what is
    left, retrying until the deadline, then stop; also at interpreter exit for the sync one,
    and when its client is closed). They are context managers. The thread or task starts with
    the first `add`.

    - close() keeps its deadline: it returns within `timeout_s` and a grace of 0.25 s for an
      answer already on its way, whatever the network does. Each post made after close() was
      called has the time left as its whole time (the sync client shares it out between
      httpx's phases, which httpx times one by one; the async one puts `asyncio.timeout` round
      it); a post still waiting since before close() (with the client's own timeout) is given
      up on at the deadline (the async task is cancelled, the sync thread is left to end).

    - Retried, the batch re-sent unchanged: 503 (honouring Retry-After as the least wait),
      502, 504, 429, and no answer at all (refused, reset, timed out), with exponential
      back-off and jitter (`Backoff`: 0.1 s doubling to 10 s by default). Retries go on
      while the batcher is open, since giving up would lose rewards, and a batch waits behind
      the one being retried, in order. A re-sent batch counts once: the service deduplicates
      by decision id, so a batch whose 202 was lost on the way back comes back as duplicates.
    - Final, never retried: refusals of single rewards inside a 202 (403, 410, 404, 422:
      counted as `rejected`), and refusals of the whole request that sending again cannot
      change (401/403 a wrong or missing token, 404 a URL that is not a mab service, 500),
      counted as `failed`. A 413/422 of a whole batch (an item the service refuses although
      the client's own checks passed it) sends the batch again in halves, down to that item.
    - Reported: each final failure goes to `on_error(failures)` (a list of `FeedbackFailure`:
      decision, reward, status, reason), called from the batcher's thread or task, or from
      close() for what it gives up on (one call at a time, each failure once), and to the
      `bandit.client` logger; `counters` is a consistent snapshot of `added`, `sent`
      (acknowledged) = `accepted` + `duplicate` + `rejected`, `failed`, `acknowledged_late`,
      `pending`, `dropped`, `retries` and the last retry's reason, with `added` = `sent` +
      `failed` + `pending`. A FeedbackBatcher's on_error may call its close() (it then returns
      at once; the sender keeps to the deadline). An AsyncFeedbackBatcher's on_error is a plain
      call, and its close() a coroutine, which on_error cannot wait for: to stop at a failure,
      have on_error set a flag (or an `asyncio.Event`) that the application acts on.
    - Never losing an acknowledged reward: a reward counts as sent only once a 202 covering it
      came back. Rewards still unacknowledged at close()'s deadline (buffered, or on their way
      without an answer) are `failed` with status None, once, and handed to on_error before
      close() returns, so an application can keep them and send them later (they count once,
      even if one of them was counted before its answer was lost). Only if the sync sender is
      still inside an earlier on_error call at the deadline (a slow one, or one waiting on the
      thread that is closing) does close() return without waiting for it: that thread hands
      them to on_error, once, when its call returns. A 202 that comes after
      that deadline changes none of this: those rewards stay `failed` and are counted in
      `acknowledged_late` too (the service did count them; sent again, they are duplicates).
    - Bounded memory: at most `max_buffered` (100,000) rewards wait; past that `add` drops the
      reward, returns False and counts it in `dropped` (logged once per spell of fullness).
      Dropping rather than blocking: a full buffer means the service has been unreachable for
      a long while, and blocking `add` would stall the application's request handlers (or its
      event loop) on the outage of a side channel. What is dropped was never acknowledged,
      and the counter says how much it was.
    - Forking (gunicorn's or uwsgi's preload): a `Client` and a `FeedbackBatcher` made before
      a fork work in the child. On its first use there, the client gets a connection pool of
      its own (the inherited connections are the parent's; a `transport` passed in is the
      caller's and is kept), and the batcher its own locks and books, starting empty, its
      counters at zero, and a sender thread of its own with its first reward: what the parent
      had buffered or in flight stays the parent's to send and to count. Sending it from the
      child too would be harmless to the service (it counts each decision once) but would count
      it in two processes' books and report its failures twice. Nothing is done at the fork
      itself: a child that never uses them (a multiprocessing worker, a subprocess's
      preexec_fn) starts no thread and builds no pool. The asyncio ones cannot cross a fork (an
      event loop does not): make them in the process that uses them.
"""

from __future__ import annotations

from bandit.client.async_batcher import AsyncFeedbackBatcher
from bandit.client.async_client import AsyncClient
from bandit.client.backoff import Backoff
from bandit.client.calls import UNIT_HEADER
from bandit.client.delivery import FeedbackFailure
from bandit.client.errors import ApiError, ClientError, Unreachable
from bandit.client.ledger import BatcherCounters
from bandit.client.results import FeedbackResult, Invocation, RejectedItem
from bandit.client.sync_batcher import FeedbackBatcher
from bandit.client.sync_client import Client

__all__ = [
    "UNIT_HEADER",
    "ApiError",
    "AsyncClient",
    "AsyncFeedbackBatcher",
    "Backoff",
    "BatcherCounters",
    "Client",
    "ClientError",
    "FeedbackBatcher",
    "FeedbackFailure",
    "FeedbackResult",
    "Invocation",
    "RejectedItem",
    "Unreachable",
]
