"""The HTTP side of every call, shared by the sync and the async client: where it goes, with which
token, and how its answer reads. The clients only send what these build."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from bandit.client.errors import ApiError, Unreachable
from bandit.client.limits import MAX_FEEDBACK_ITEMS, Item, checked_item

DEFAULT_URL = "http://127.0.0.1:8000"
#: The request header that keeps a unit on one version (proxy/headers.py reads it).
UNIT_HEADER = "X-Bandit-Unit"

#: Query parameters as httpx takes them.
Params = Mapping[str, Any] | list[tuple[str, Any]] | str


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the service is and the tokens it is called with, from the arguments or the environment."""

    url: str
    admin_token: str | None
    feedback_token: str | None

    @classmethod
    def resolve(cls, url: str | None, token: str | None, feedback_token: str | None) -> Endpoint:
        """url: argument, else BANDIT_URL, else DEFAULT_URL; tokens: arguments, else BANDIT_ADMIN_TOKEN and
        BANDIT_FEEDBACK_TOKEN; feedback falls back on the admin token, which the service accepts for it too."""
        url = url or os.environ.get("BANDIT_URL") or DEFAULT_URL
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as error:
            raise ValueError(f"the service URL {url!r} is not a URL: {error}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"the service URL {url!r} must be http:// or https:// with a host, e.g. {DEFAULT_URL}")
        admin = token if token is not None else os.environ.get("BANDIT_ADMIN_TOKEN")
        feedback = feedback_token if feedback_token is not None else os.environ.get("BANDIT_FEEDBACK_TOKEN")
        return cls(url.rstrip("/"), admin or None, feedback or admin or None)

    @property
    def admin_headers(self) -> dict[str, str]:
        return _bearer(self.admin_token)

    @property
    def feedback_headers(self) -> dict[str, str]:
        return {**_bearer(self.feedback_token), "content-type": "application/json"}


def _bearer(token: str | None) -> dict[str, str]:
    # No token, no header: the service then says which one it wants (401), or takes open feedback.
    return {"authorization": f"Bearer {token}"} if token else {}


@dataclass(frozen=True, slots=True)
class Call:
    """One management request: method, path under the service URL, JSON body."""

    method: str
    path: str
    json: object = None


def _experiment(name: str, *action: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"an experiment name must be a non-empty string, not {name!r}")
    return "/".join(["/api/experiments", quote(name, safe=""), *action])


def _body(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping (a JSON object), not {type(value).__name__}")
    return dict(value)


def list_experiments() -> Call:
    return Call("GET", "/api/experiments")


def get_experiment(name: str) -> Call:
    return Call("GET", _experiment(name))


def create_experiment(spec: Mapping[str, Any]) -> Call:
    return Call("POST", "/api/experiments", _body(spec, "the experiment spec"))


def update_experiment(name: str, patch: Mapping[str, Any]) -> Call:
    return Call("PATCH", _experiment(name), _body(patch, "the patch"))


def delete_experiment(name: str) -> Call:
    return Call("DELETE", _experiment(name))


def lifecycle(name: str, action: str) -> Call:
    """pause, resume, reset, rollback: a POST without a body."""
    return Call("POST", _experiment(name, action))


def promote(name: str, arm: str | None) -> Call:
    # Without an arm the service swaps a two-arm blue/green split (and says so with 422 otherwise).
    return Call("POST", _experiment(name, "promote"), {"arm": arm} if arm is not None else None)


def stats(name: str) -> Call:
    return Call("GET", _experiment(name, "stats"))


def decision_log_path(name: str) -> str:
    return _experiment(name, "log")


def management_answer(response: httpx.Response) -> Any:
    """The JSON a management call answered (None for 204), or ApiError for any refusal."""
    if not response.is_success:
        raise ApiError.from_response(response)
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise ApiError(response.status_code, "the answer is not JSON: is the URL that of a mab service?") from None


def invoke_target(experiment: str, path: str) -> str:
    """`/invoke/{experiment}/{path}`: the experiment quoted, the path passed on as written."""
    if not isinstance(experiment, str) or not experiment:
        raise ValueError(f"an experiment name must be a non-empty string, not {experiment!r}")
    return f"/invoke/{quote(experiment, safe='')}/{path.lstrip('/')}"


def invoke_headers(headers: Mapping[str, str] | None, unit: str | None) -> dict[str, str]:
    """The caller's headers (never a token of ours: they reach the model) plus the unit header."""
    merged = dict(headers or {})
    if unit is not None:
        if not isinstance(unit, str) or not unit:
            raise ValueError(f"unit must be a non-empty string, not {unit!r}")
        merged[UNIT_HEADER] = unit
    return merged


def feedback_items(items: Iterable[tuple[str, float]]) -> list[Item]:
    """A batch checked against the service's rules: at most MAX_FEEDBACK_ITEMS, each well-formed."""
    batch = [checked_item(decision, value) for decision, value in items]
    if len(batch) > MAX_FEEDBACK_ITEMS:
        raise ValueError(
            f"{len(batch)} rewards in one request; the service takes at most {MAX_FEEDBACK_ITEMS} (use a batcher)"
        )
    return batch


def feedback_body(items: Sequence[Item]) -> bytes:
    return msgspec.json.encode({"items": [{"decision": decision, "reward": reward} for decision, reward in items]})


#: How a request's whole time is shared out between the phases httpx times one by one (each phase
#: gets its own timeout, so one timeout for all would let a request last four times it): the most
#: for the service's answer; a pooled connection, connecting and sending at most 1000 rewards are
#: quick when the network works.
PHASE_SHARES = {"pool": 1 / 6, "connect": 1 / 6, "write": 1 / 6, "read": 1 / 2}


def within(total_s: float, ceiling_s: float) -> httpx.Timeout:
    """Per-phase timeouts that add up to `total_s` at most, none longer than the client's own `ceiling_s`."""
    total_s = max(0.001, total_s)
    pool, connect, write, read = (min(ceiling_s, total_s * PHASE_SHARES[phase]) for phase in PHASE_SHARES)
    return httpx.Timeout(pool=pool, connect=connect, write=write, read=read)


def out_of_time(request: str, url: str, total_s: float) -> Unreachable:
    """No answer within the whole time a request was given."""
    return Unreachable(f"could not reach the service at {url} ({request}): no answer within {total_s:.3g} s")


def unreachable(request: str, url: str, error: httpx.TransportError) -> Unreachable:
    """A transport failure as the client reports it, naming the service, the request and what went wrong."""
    reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return Unreachable(f"could not reach the service at {url} ({request}): {reason}")
