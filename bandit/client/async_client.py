"""AsyncClient: the service's API on httpx.AsyncClient, for asyncio applications."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, cast

import httpx

from bandit.client import calls
from bandit.client.async_batcher import AsyncFeedbackBatcher
from bandit.client.backoff import Backoff
from bandit.client.buffer import DEFAULT_MAX_BUFFERED
from bandit.client.errors import ApiError
from bandit.client.ledger import OnError
from bandit.client.limits import Item
from bandit.client.results import FeedbackResult, Invocation


class AsyncClient:
    """Client's asyncio twin: the same calls as coroutines; see `bandit.client`."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        feedback_token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = calls.Endpoint.resolve(url, token, feedback_token)
        self.timeout = timeout
        # No default headers: a token set here would reach the models through /invoke.
        self._http = httpx.AsyncClient(base_url=self.endpoint.url, timeout=timeout, transport=transport)
        self._batchers: weakref.WeakSet[AsyncFeedbackBatcher] = weakref.WeakSet()

    @property
    def url(self) -> str:
        return self.endpoint.url

    # -- management -----------------------------------------------------------------------------
    async def list_experiments(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._manage(calls.list_experiments()))

    async def get_experiment(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._manage(calls.get_experiment(name)))

    async def create_experiment(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return cast(dict[str, Any], await self._manage(calls.create_experiment(spec)))

    async def update_experiment(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return cast(dict[str, Any], await self._manage(calls.update_experiment(name, patch)))

    async def delete_experiment(self, name: str) -> None:
        await self._manage(calls.delete_experiment(name))

    async def pause(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._manage(calls.lifecycle(name, "pause")))

    async def resume(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._manage(calls.lifecycle(name, "resume")))

    async def reset(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._manage(calls.lifecycle(name, "reset")))

    async def rollback(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._manage(calls.lifecycle(name, "rollback")))

    async def promote(self, name: str, arm: str | None = None) -> dict[str, Any]:
        return cast(dict[str, Any], await self._manage(calls.promote(name, arm)))

    async def stats(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._manage(calls.stats(name)))

    # -- data plane -----------------------------------------------------------------------------
    async def invoke(
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
            response = await self._http.request(
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

    async def reward(self, decision: str, value: float) -> FeedbackResult:
        """Report one reward (a batch of one: a refused reward is in the result, not raised)."""
        return await self.rewards([(decision, value)])

    async def rewards(self, items: Iterable[tuple[str, float]]) -> FeedbackResult:
        """Report up to 1000 rewards in one POST /feedback; ApiError only when the request itself is refused."""
        batch = calls.feedback_items(items)
        if not batch:
            return FeedbackResult(accepted=0, duplicate=0, rejected=0)
        response = await self.post_feedback(batch)
        if not response.is_success:
            raise ApiError.from_response(response)
        return FeedbackResult.decode(response)

    async def post_feedback(self, items: Sequence[Item], *, timeout_s: float | None = None) -> httpx.Response:
        """POST /feedback with these (already checked) items, the answer as it came: what the batcher builds on.

        `timeout_s` is the whole time the request may take (the batcher's time left before close()'s
        deadline), however it is spent (waiting for a connection, connecting, sending, waiting for
        the answer); without it, the client's timeout applies to each phase. Unreachable when no
        answer came.
        """
        timeout = self.timeout if timeout_s is None else max(0.001, min(self.timeout, timeout_s))
        try:
            async with asyncio.timeout(timeout_s):
                return await self._http.post(
                    "/feedback",
                    content=calls.feedback_body(items),
                    headers=self.endpoint.feedback_headers,
                    timeout=timeout,
                )
        except httpx.TransportError as error:
            raise calls.unreachable("POST /feedback", self.url, error) from error
        except TimeoutError:  # asyncio.timeout's, past the whole time (httpx's own are TransportErrors)
            raise calls.out_of_time("POST /feedback", self.url, timeout) from None

    def batcher(
        self,
        *,
        max_items: int = 500,
        max_delay_s: float = 1.0,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        on_error: OnError | None = None,
        backoff: Backoff | None = None,
        seed: int | None = None,
    ) -> AsyncFeedbackBatcher:
        """A batcher of rewards over this client, sending from a task of the running loop; aclose() closes it first."""
        batcher = AsyncFeedbackBatcher(
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
    async def aclose(self) -> None:
        """Close the batchers made by this client (each sends what it holds, within its deadline), then it."""
        for batcher in list(self._batchers):
            await batcher.close()
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _manage(self, call: calls.Call) -> Any:
        try:
            response = await self._http.request(
                call.method, call.path, json=call.json, headers=self.endpoint.admin_headers
            )
        except httpx.TransportError as error:
            raise calls.unreachable(f"{call.method} {call.path}", self.url, error) from error
        return calls.management_answer(response)
