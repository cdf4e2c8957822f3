"""Client: the service's API on httpx.Client, for threads and scripts."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, cast

import httpx

from bandit.client import calls
from bandit.client.backoff import Backoff
from bandit.client.buffer import DEFAULT_MAX_BUFFERED
from bandit.client.errors import ApiError
from bandit.client.forks import ProcessBound
from bandit.client.ledger import OnError
from bandit.client.limits import Item
from bandit.client.results import FeedbackResult, Invocation
from bandit.client.sync_batcher import FeedbackBatcher


class Client:
    """The management API (admin token), invocations and rewards (feedback token); see `bandit.client`."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        feedback_token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = calls.Endpoint.resolve(url, token, feedback_token)
        self.timeout = timeout
        self._transport = transport
        self._process = ProcessBound()  # first: a pool made before it would be taken for a child's own
        self._http = self._connections()
        self._batchers: weakref.WeakSet[FeedbackBatcher] = weakref.WeakSet()

    @property
    def url(self) -> str:
        return self.endpoint.url

    # -- management -----------------------------------------------------------------------------
    def list_experiments(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._manage(calls.list_experiments()))

    def get_experiment(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._manage(calls.get_experiment(name)))

    def create_experiment(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return cast(dict[str, Any], self._manage(calls.create_experiment(spec)))

    def update_experiment(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return cast(dict[str, Any], self._manage(calls.update_experiment(name, patch)))

    def delete_experiment(self, name: str) -> None:
        self._manage(calls.delete_experiment(name))

    def pause(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._manage(calls.lifecycle(name, "pause")))

    def resume(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._manage(calls.lifecycle(name, "resume")))

    def reset(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._manage(calls.lifecycle(name, "reset")))

    def rollback(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._manage(calls.lifecycle(name, "rollback")))

    def promote(self, name: str, arm: str | None = None) -> dict[str, Any]:
        return cast(dict[str, Any], self._manage(calls.promote(name, arm)))

    def stats(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._manage(calls.stats(name)))

    def export_log(self, name: str, since: float = 0.0) -> Iterator[str]:
        """The experiment's decision log from `since` (unix s) on, one JSON line per decision, as
        the service streams it (fields: decision, time, arm, action, propensity, reward, unit,
        policy_version; Open Bandit Pipeline reads action, reward and propensity as its pscore)."""
        path = calls.decision_log_path(name)
        try:
            with self._pool().stream(
                "GET", path, params={"since": since}, headers=self.endpoint.admin_headers
            ) as response:
                if not response.is_success:
                    response.read()
                    calls.management_answer(response)
                yield from (line for line in response.iter_lines() if line)
        except httpx.TransportError as error:
            raise calls.unreachable(f"GET {path}", self.url, error) from error

    # -- data plane -----------------------------------------------------------------------------
    def invoke(
        self,
        experiment: str,
        path: str = "",
        *,
        method: str = "POST",
        json: object = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        unit: str | None = None,
        params: calls.Params | None = None,
    ) -> Invocation:
        """Send a request to a version of the experiment's model; every HTTP answer is returned, none raised."""
        if json is not None and content is not None:
            raise ValueError("invoke takes a json body or raw content, not both")
        target = calls.invoke_target(experiment, path)
        request = f"{method} {target}"
        try:
            response = self._pool().request(
                method,
                target,
                json=json,
                content=content,
                headers=calls.invoke_headers(headers, unit),
                params=params,
            )
        except httpx.TransportError as error:
            raise calls.unreachable(request, self.url, error) from error
        return Invocation.from_response(response)

    def reward(self, decision: str, value: float) -> FeedbackResult:
        """Report one reward (a batch of one: a refused reward is in the result, not raised)."""
        return self.rewards([(decision, value)])

    def rewards(self, items: Iterable[tuple[str, float]]) -> FeedbackResult:
        """Report up to 1000 rewards in one POST /feedback; ApiError only when the request itself is refused."""
        batch = calls.feedback_items(items)
        if not batch:
            return FeedbackResult(accepted=0, duplicate=0, rejected=0)
        response = self.post_feedback(batch)
        if not response.is_success:
            raise ApiError.from_response(response)
        return FeedbackResult.decode(response)

    def post_feedback(self, items: Sequence[Item], *, timeout_s: float | None = None) -> httpx.Response:
        """POST /feedback with these (already checked) items, the answer as it came: what the batcher builds on.

        `timeout_s` is the whole time the request may take (the batcher's time left before close()'s
        deadline): shared out between httpx's phases (`calls.PHASE_SHARES`), none longer than the
        client's timeout. Without it, the client's timeout applies to each phase. Unreachable when
        no answer came.
        """
        timeout = self.timeout if timeout_s is None else calls.within(timeout_s, self.timeout)
        try:
            return self._pool().post(
                "/feedback",
                content=calls.feedback_body(items),
                headers=self.endpoint.feedback_headers,
                timeout=timeout,
            )
        except httpx.TransportError as error:
            raise calls.unreachable("POST /feedback", self.url, error) from error

    def batcher(
        self,
        *,
        max_items: int = 500,
        max_delay_s: float = 1.0,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        on_error: OnError | None = None,
        backoff: Backoff | None = None,
        seed: int | None = None,
    ) -> FeedbackBatcher:
        """A background batcher of rewards over this client; closing the client closes it first."""
        batcher = FeedbackBatcher(
            self,
            max_items=max_items,
            max_delay_s=max_delay_s,
            max_buffered=max_buffered,
            on_error=on_error,
            backoff=backoff,
            seed=seed,
        )
        self._batchers.add(batcher)
        return batcher

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the batchers made by this client (each sends what it holds, within its deadline), then it."""
        for batcher in list(self._batchers):
            batcher.close()
        self._pool().close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _connections(self) -> httpx.Client:
        # No default headers: a token set here would reach the models through /invoke.
        return httpx.Client(base_url=self.endpoint.url, timeout=self.timeout, transport=self._transport)

    def _pool(self) -> httpx.Client:
        """The connections of this process: in a child forked since, a pool of its own, made on first use.

        The connections it inherited are the parent's (two processes writing on one socket garble
        both), and their lock may be held by a thread that does not exist here. They are let go of
        rather than closed, so that nothing (a TLS close alert) goes on the parent's connections. A
        transport passed in is the caller's, kept as it is. Made on first use rather than at the fork
        (see `forks`): most children never use the client, and a new pool builds an SSL context.
        """
        self._process.rebuild_if_forked(self._reconnect_in_child)
        return self._http

    def _reconnect_in_child(self) -> None:
        if self._transport is None and not self._http.is_closed:
            self._http = self._connections()

    def _manage(self, call: calls.Call) -> Any:
        try:
            response = self._pool().request(call.method, call.path, json=call.json, headers=self.endpoint.admin_headers)
        except httpx.TransportError as error:
            raise calls.unreachable(f"{call.method} {call.path}", self.url, error) from error
        return calls.management_answer(response)
