"""The body refusal names the decoder's error, whichever msgspec release raised it."""

from __future__ import annotations

import msgspec
import pytest
from litestar.exceptions import ClientException, SerializationException

from bandit.api.errors import decode_refusal


def _as_litestar_raises(decoder_error: Exception) -> ClientException:
    """The chain Litestar builds around a decoder error: ClientException <- SerializationException <- it."""
    try:
        try:
            try:
                raise decoder_error
            except Exception as error:
                raise SerializationException(str(error)) from error
        except SerializationException as error:
            raise ClientException(str(error)) from error
    except ClientException as refusal:
        return refusal


@pytest.mark.parametrize(
    "decoder_error",
    [
        # msgspec 0.23 and later
        msgspec.DecodeError("Invalid UTF-8 encoded string"),
        # earlier releases
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    ],
    ids=["DecodeError", "UnicodeDecodeError"],
)
def test_bytes_that_are_not_utf8_are_named_as_such(decoder_error: Exception) -> None:
    assert decode_refusal(_as_litestar_raises(decoder_error)) == "body: the request body is not UTF-8 encoded JSON"


def test_the_real_decoder_error_is_recognised() -> None:
    try:
        msgspec.json.decode(b'{"decision": "\xff\xfe"}')
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        refusal = _as_litestar_raises(error)
    assert "not UTF-8" in decode_refusal(refusal)


def test_other_decode_errors_keep_their_own_hint() -> None:
    refusal = _as_litestar_raises(msgspec.DecodeError("JSON is malformed: invalid character (byte 3)"))
    assert decode_refusal(refusal).endswith(
        "the request body is not valid JSON (note that NaN and Infinity are not JSON numbers)"
    )
