import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.auth import bearer, sign, signature_matches, token_matches
from services.ingest.body import check_content_type, parse_json
from shared.errors import BadRequest, UnsupportedMediaType

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


def test_token_matches() -> None:
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cre", "s3cret")
    assert not token_matches(None, "s3cret")
    assert not token_matches("\udcff", "s3cret")  # undecodable input is just wrong


def test_signature_is_github_style_hmac_sha256() -> None:
    body, secret = b'{"a":1}', "k"
    expected = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign(body, secret) == expected
    assert signature_matches(body, expected, secret)
    assert signature_matches(body, expected.upper().replace("SHA256=", "sha256="), secret)
    assert not signature_matches(body + b" ", expected, secret)
    assert not signature_matches(body, expected, "other")
    assert not signature_matches(body, None, secret)
    assert not signature_matches(body, expected.removeprefix("sha256="), secret)


@given(st.binary(max_size=64), st.text(max_size=80))
def test_signature_check_never_raises(body: bytes, header: str) -> None:
    assert signature_matches(body, header, "secret") is (
        header.strip().lower() == sign(body, "secret")
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.api+json",
        "application/problem+json",
    ],
)
def test_json_content_types_pass(value: str | None) -> None:
    check_content_type(value)


@pytest.mark.parametrize(
    "value",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/json+html",
        "application/xml",
    ],
)
def test_other_content_types_are_415(value: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        check_content_type(value)


@pytest.mark.parametrize(
    "body", [b"", b"nope", b"{", b"NaN", b"\xff\xfe", b"[" * 2000 + b"]" * 2000]
)
def test_not_json_is_400(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_json(body)


@pytest.mark.parametrize("body", [b"1", b'"x"', b"null", b"true"])
def test_scalar_top_level_is_400(body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        parse_json(body)
    assert info.value.errors[0].location == "body"


def test_objects_and_arrays_parse() -> None:
    assert parse_json(b'{"a": [1]}') == {"a": [1]}
    assert parse_json(b"[]") == []
