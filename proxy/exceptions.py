"""Errors of the forwarding path.

UpstreamError                 the upstream did not give a response
├── UpstreamUnreachable  502  connect refused, reset, protocol error
└── UpstreamTimeout      504  connect or read timed out

Each client translates its own library's errors into these at one boundary
(its ``send``); details go to the log, never to the caller.
"""

from __future__ import annotations


class UpstreamError(Exception):
    status_code = 502
    message = "upstream failed"


class UpstreamUnreachable(UpstreamError):
    status_code = 502
    message = "upstream is unreachable"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    message = "upstream timed out"
