from __future__ import annotations

import pytest

from proxy.clients.base import Origin
from proxy.exceptions import BadTarget
from proxy.headers import request_headers, response_headers
from proxy.target import parse_invoke_path, upstream_target


def test_invoke_path_splits_experiment_and_rest() -> None:
    assert parse_invoke_path(b"/invoke/shop/v1/predict") == ("shop", b"/v1/predict")
    assert parse_invoke_path(b"/invoke/shop") == ("shop", b"")


@pytest.mark.parametrize(
    "rest",
    [b"/../admin", b"/a/%2e%2e/b", b"/a/%2E%2e%2Fb/..", b"/a/./b", b"/a\\..\\b", b"/a b", b"/\xff", b"/a%5c..%5cb"],
)
def test_paths_that_could_escape_the_base_path_are_refused(rest: bytes) -> None:
    with pytest.raises(BadTarget):
        upstream_target(rest, b"")


def test_ordinary_paths_pass_encoded() -> None:
    assert upstream_target(b"/v1/models/a%20b:predict", b"x=1&y=%2F") == "/v1/models/a%20b:predict?x=1&y=%2F"
    assert upstream_target(b"", b"") == "/"
    # An authority-looking path stays a path: the origin is fixed separately.
    assert upstream_target(b"//evil.example/x", b"") == "//evil.example/x"


def test_origin_keeps_base_path() -> None:
    assert Origin.from_url("http://127.0.0.1:9000/models/") == Origin("http", "127.0.0.1", 9000, "/models")
    assert Origin.from_url("https://h") == Origin("https", "h", 443, "")


def test_hop_by_hop_headers_are_dropped_and_forwarding_headers_added() -> None:
    incoming = [
        (b"host", b"svc:8000"),
        (b"connection", b"keep-alive, x-secret-hop"),
        (b"x-secret-hop", b"1"),
        (b"te", b"trailers"),
        (b"content-length", b"3"),
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"authorization", b"Bearer user"),
    ]
    out = dict(request_headers(incoming, "127.0.0.2", "http"))
    assert b"connection" not in out and b"x-secret-hop" not in out and b"te" not in out and b"host" not in out
    assert out[b"x-forwarded-for"] == b"10.0.0.1, 127.0.0.2"
    assert out[b"x-forwarded-proto"] == b"http" and out[b"x-forwarded-host"] == b"svc:8000"
    assert out[b"authorization"] == b"Bearer user"
    assert response_headers([(b"Transfer-Encoding", b"chunked"), (b"X-Model", b"v1")]) == [(b"x-model", b"v1")]
