"""The path and query sent upstream, checked so a request cannot leave its arm's base path."""

from __future__ import annotations

import re
from urllib.parse import unquote

from proxy.exceptions import BadTarget

_CONTROL = re.compile("[\x00-\x1f\x7f]")
_PATH_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:@/")


def parse_invoke_path(raw_path: bytes) -> tuple[str, bytes]:
    """Split ``/invoke/{experiment}/{rest}`` into the experiment name and ``rest`` (still encoded)."""
    _, _, after = raw_path.partition(b"/invoke/")
    experiment, slash, rest = after.partition(b"/")
    if not experiment:
        raise BadTarget("the path must be /invoke/{experiment}/{path}")
    return experiment.decode("latin-1"), slash + rest


def upstream_target(rest: bytes, query_string: bytes) -> str:
    """Path and query for the upstream, relative to the arm's base path.

    Only unreserved and sub-delimiter characters pass, and no segment may be ``..``
    in any encoding, so the request stays under the arm's base path on its host.
    """
    path = rest or b"/"
    if not path.startswith(b"/") or not set(path) <= _PATH_BYTES:
        raise BadTarget("the path holds characters that cannot be forwarded")
    decoded = unquote(path.decode("ascii"))
    if _CONTROL.search(decoded):
        # An encoded CR, LF or NUL: meaningless in a path, and a way to make an upstream fail on purpose.
        raise BadTarget("the path holds encoded control characters")
    if any(segment in ("..", ".") for segment in decoded.replace("\\", "/").split("/")):
        raise BadTarget("the path may not contain '.' or '..' segments")
    if query_string and not set(query_string) <= _PATH_BYTES | frozenset(b"?"):
        raise BadTarget("the query holds characters that cannot be forwarded")
    target = path.decode("ascii")
    return f"{target}?{query_string.decode('ascii')}" if query_string else target
