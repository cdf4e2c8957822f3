"""A network between the client and the real service that loses answers: the request reaches the
service and is handled, then its reply is dropped on the way back, as a connection reset would."""

from __future__ import annotations

import httpx


def _loses(request: httpx.Request, lost: list[int]) -> bool:
    if request.url.path == "/feedback" and lost[0] > 0:
        lost[0] -= 1
        return True
    return False


class LosingTransport(httpx.BaseTransport):
    """Forwards every request; the replies to the first `lose` feedback posts never arrive."""

    def __init__(self, lose: int) -> None:
        self._inner = httpx.HTTPTransport()
        self._lost = [lose]
        self.handled = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        response.read()
        self.handled += 1
        if _loses(request, self._lost):
            response.close()
            raise httpx.ReadError("connection reset by peer (the reply was lost)", request=request)
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncLosingTransport(httpx.AsyncBaseTransport):
    """LosingTransport for httpx.AsyncClient."""

    def __init__(self, lose: int) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._lost = [lose]
        self.handled = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        await response.aread()
        self.handled += 1
        if _loses(request, self._lost):
            await response.aclose()
            raise httpx.ReadError("connection reset by peer (the reply was lost)", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
