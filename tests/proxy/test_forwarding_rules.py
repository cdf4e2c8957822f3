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
    out = dict(request_headers(incoming, "127.0.0.2", "http").forwarded)
    assert b"connection" not in out and b"x-secret-hop" not in out and b"te" not in out and b"host" not in out
    assert out[b"x-forwarded-for"] == b"10.0.0.1, 127.0.0.2"
    assert out[b"x-forwarded-proto"] == b"http" and out[b"x-forwarded-host"] == b"svc:8000"
    assert out[b"authorization"] == b"Bearer user"
    assert response_headers([(b"Transfer-Encoding", b"chunked"), (b"X-Model", b"v1")]).headers == [(b"x-model", b"v1")]


def test_one_pass_over_the_request_headers_reads_what_the_proxy_needs() -> None:
    incoming = [
        (b"host", b"svc:8000"),
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"content-length", b"12"),
        (b"x-bandit-unit", b"user-7"),
        (b"x-forwarded-for", b"10.0.0.2"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"spoofed"),
        (b"expect", b"100-continue"),
        (b"accept", b"*/*"),
    ]
    request = request_headers(incoming, "127.0.0.2", "https")
    assert request.content_length == b"12" and request.unit == b"user-7"
    # Forwarded in the client's order; the proxy's own forwarding headers last, the client's replaced.
    assert request.forwarded == [
        (b"x-bandit-unit", b"user-7"),
        (b"accept", b"*/*"),
        (b"x-forwarded-for", b"10.0.0.1, 10.0.0.2, 127.0.0.2"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"svc:8000"),
    ]
    bare = request_headers([(b"transfer-encoding", b"chunked")], None, "http")
    assert bare.content_length is None and bare.unit is None
    assert bare.forwarded == [(b"x-forwarded-proto", b"http")]


def test_a_header_named_in_connection_is_not_forwarded_even_before_connection() -> None:
    incoming = [
        (b"x-hop", b"1"),
        (b"x-bandit-unit", b"u"),
        (b"connection", b"close, X-Hop, x-bandit-unit"),
        (b"a", b"b"),
    ]
    request = request_headers(incoming, None, "http")
    assert request.forwarded == [(b"a", b"b"), (b"x-forwarded-proto", b"http")]
    assert request.unit is None


def test_response_headers_keep_the_content_length_and_drop_the_upstreams_bandit_headers() -> None:
    answer = response_headers(
        [
            (b"Content-Type", b"application/json"),
            (b"Content-Length", b"42"),
            (b"X-Bandit-Arm", b"forged"),
            (b"x-bandit-decision", b"forged"),
            (b"Connection", b"x-private"),
            (b"X-Private", b"1"),
            (b"Date", b"Tue"),
        ]
    )
    assert answer.headers == [(b"content-type", b"application/json"), (b"content-length", b"42")]
    assert answer.content_length == 42
    assert response_headers([(b"transfer-encoding", b"chunked")]).content_length is None
