"""Exception handlers: every error answers JSON `{"status_code", "detail"}`, never a bare 500.

The service's own errors (:mod:`bandit.core.errors`) carry their status; Litestar's are
reworded where its own text would not tell a client what to fix.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from bandit.core.errors import MabError
from bandit.core.models import MAX_REWARD_MAGNITUDE, PATTERN_RULES

log = logging.getLogger("mab.api")

# msgspec names a pattern by quoting the regex; people read the rule it stands for.
_PATTERN_MESSAGES = {
    f"Expected `str` matching regex {pattern!r}": f"must be {rule}" for pattern, rule in PATTERN_RULES.items()
}
# msgspec's messages for JSON that is not JSON, or numbers no float can hold, which Litestar decodes
# without a type (so without the field's path): say what is wrong in words.
_DECODE_HINTS = (
    (
        re.compile(r"^Number out of range"),
        "body: a number is out of range (larger than a 64-bit float, e.g. 1e999); "
        f"numbers must be finite, rewards within ±{MAX_REWARD_MAGNITUDE:g}",
    ),
    (
        re.compile(r"^JSON is malformed: invalid character"),
        "{message}: the request body is not valid JSON (note that NaN and Infinity are not JSON numbers)",
    ),
    (re.compile(r"^JSON is malformed"), "{message}: the request body is not valid JSON"),
    (re.compile(r"^Input data was truncated"), "{message}: the request body is not complete JSON"),
)


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        {"status_code": status, "detail": detail}, status_code=status, media_type=MediaType.JSON, headers=headers
    )


def explain(message: str) -> str:
    """A validation message in words: regex patterns replaced by the rules they encode."""
    for quoted, rule in _PATTERN_MESSAGES.items():
        message = message.replace(quoted, rule)
    return message


def validation_error(_: Request[Any, Any, Any], error: ValidationException) -> Response[Any]:
    """A malformed body or parameter: 422, with msgspec's message naming the field."""
    messages = [_located(item) for item in (error.extra or []) if isinstance(item, dict)]
    detail = "; ".join(m for m in messages if m) or error.detail
    if detail.startswith("Validation failed for"):
        detail = "the request body is not valid JSON" if not messages else detail
    return _json(422, explain(detail))


def _located(item: dict[str, Any]) -> str:
    """msgspec's message with the field it is about, e.g. "`items[0].reward`: Expected `float`, got `str`"."""
    message, key = str(item.get("message", "")), item.get("key")
    source = getattr(item.get("source"), "value", item.get("source"))  # Litestar's ParamType enum, or "body"
    if message == "'data'":  # Litestar's KeyError when a required body is absent
        return "body: the request body is empty; send a JSON object"
    if not key or key == "data":
        return f"body: {message}"
    if source in ("path", "query", "header", "cookie"):
        return f"{source} parameter `{key}`: {message}"
    return f"`{key}`: {message}"


def service_error(_: Request[Any, Any, Any], error: MabError) -> Response[Any]:
    """One of the service's own refusals, with its status and headers (e.g. Retry-After)."""
    return _json(error.status_code, error.detail, error.headers or None)


def http_error(request: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    if error.status_code == 413:  # Litestar's own says only "Request Entity Too Large"
        limit = request.route_handler.resolve_request_max_body_size()
        return _json(413, f"request body exceeds the limit of {limit} bytes for {request.url.path}")
    # Litestar answers an undecodable body with 400; the contract calls malformed input 422.
    if error.status_code == 400:
        return _json(422, decode_refusal(error), error.headers)
    # The router's own refusals say only their status line.
    if error.status_code == 404 and error.detail == "Not Found":
        detail = f"no such endpoint: {request.method} {request.url.path} (the API is described at /schema)"
        return _json(404, detail, error.headers)
    if error.status_code == 405 and error.detail == "Method Not Allowed":
        allowed = (error.headers or {}).get("allow", (error.headers or {}).get("Allow", "see /schema"))
        return _json(405, f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})", error.headers)
    return _json(error.status_code, error.detail, error.headers)


#: What the body refusal says of bytes that are not UTF-8, whichever msgspec found them.
_NOT_UTF8 = "body: the request body is not UTF-8 encoded JSON"
#: msgspec 0.23 and later report bytes that are not UTF-8 as a DecodeError with this message;
#: earlier releases raised UnicodeDecodeError, which Litestar let through (see _undecodable_body).
_MSGSPEC_NOT_UTF8 = "Invalid UTF-8"


def _decoder_error(error: BaseException) -> BaseException | None:
    """The JSON decoder's own error behind a refusal, if one caused it.

    Litestar wraps msgspec's DecodeError in a SerializationException, and that in the
    ClientException (400) it raises: the chain of causes leads back to it.
    """
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, msgspec.DecodeError | UnicodeDecodeError):
            return cause
        cause = cause.__cause__
    return None


def decode_refusal(error: HTTPException) -> str:
    """Why a body that Litestar could not decode (its 400) is refused, in words."""
    decoder_error = _decoder_error(error)
    if isinstance(decoder_error, UnicodeDecodeError) or (
        isinstance(decoder_error, msgspec.DecodeError) and str(decoder_error).startswith(_MSGSPEC_NOT_UTF8)
    ):
        return _NOT_UTF8
    return _decode_hint(error.detail)


def _decode_hint(detail: str) -> str:
    for pattern, hint in _DECODE_HINTS:
        if pattern.search(detail):
            return hint.format(message=detail)
    return explain(detail)


def unexpected_error(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    refusal = _undecodable_body(error)
    if refusal is not None:
        return _json(422, refusal)
    name = request.path_params.get("name")  # the experiment a management route is about, if any
    fields = {"experiment": name} if isinstance(name, str) else None
    log.exception("unhandled error on %s %s", request.method, request.url.path, extra=fields)
    return _json(500, "internal error; see the service log")


def _undecodable_body(error: Exception) -> str | None:
    """Why the JSON decoder could not read the body, when that is what raised `error`.

    msgspec raises RecursionError past Python's nesting limit and (before 0.23) UnicodeDecodeError on
    bytes that are not UTF-8, and Litestar lets both through: they are the client's input, not our fault.
    Only errors raised inside Litestar's JSON decoding count, so a bug of ours still shows as 500.
    """
    frames = traceback.extract_tb(error.__traceback__)
    if not frames or not frames[-1].filename.replace("\\", "/").endswith("litestar/serialization/msgspec_hooks.py"):
        return None
    if isinstance(error, RecursionError):
        return "body: the JSON is nested too deeply (arrays or objects inside each other) to decode"
    if isinstance(error, UnicodeDecodeError):
        return f"{_NOT_UTF8} ({error.reason} at byte {error.start})"
    return None
