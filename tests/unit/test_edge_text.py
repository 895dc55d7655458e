"""The pure parts of the edge guards: which CRC tokens are answered, and where a body holds
text PostgreSQL refuses."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.ingest.channels import x
from shared.textguard import unstorable_body, unstorable_text


@given(st.from_regex(x.CRC_TOKEN, fullmatch=True))
def test_no_crc_token_that_is_answered_can_be_a_delivery(token):
    with pytest.raises(ValidationError):
        x.Delivery.model_validate_json(token)


@given(st.text(min_size=8, max_size=40).filter(lambda t: any(c in t for c in '{}": ,')))
def test_a_token_with_json_punctuation_is_never_answered(token):
    assert not x.is_crc_token(token)


@pytest.mark.parametrize(
    ("body", "content_type", "where"),
    [
        (b'{"a": {"b": ["\\u0000"]}}', "application/JSON", "body.a.b[0] contains a NUL"),
        (b'{"a": "\\ud83d"}', "", "body.a contains an unpaired UTF-16 surrogate"),
        (b'{"a": "x\x00"}', "text/plain", "body.a contains a NUL"),  # raw, not escaped
        (b'{"a": ["ok", "\\uDC00"]}', "application/json", "body.a[1] contains an unpaired"),
        (b'{"a": "\xed\xa0\x80"}', "application/json", "body.a contains an unpaired"),  # raw
        ('{"a": "x\x00"}'.encode("utf-16"), "application/json", "body.a contains a NUL"),
        (b"a=1&note=x%00y", "application/x-www-form-urlencoded; charset=UTF-8", "body.note"),
        (b"a=%ED%A0%80", "application/x-www-form-urlencoded", "not valid UTF-8"),
    ],
)
def test_unstorable_text_is_found_whatever_the_content_type(body, content_type, where):
    found = unstorable_body(body, content_type)
    assert found and where in found


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (json.dumps({"a": "😀 \\u0000 \x01"}).encode(), "application/json"),
        (json.dumps({"a": "你好 \\uD800"}, ensure_ascii=False).encode(), "application/json"),
        (b"--boundary\r\nbinary \x00 attachment", "multipart/form-data; boundary=boundary"),
        (b"From: a@b\r\n\r\nraw \x00", "message/rfc822"),  # the email route checks once decoded
        (b"", "application/json"),
        (b"a=%E4%BD%A0", "application/x-www-form-urlencoded"),
    ],
)
def test_storable_or_unreadable_bodies_pass_to_the_route(body, content_type):
    assert unstorable_body(body, content_type) is None


# Any character, lone surrogates and NUL included.
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(st.characters(codec=None)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(codec=None), max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(_json_values, st.booleans())
def test_a_body_skipped_unparsed_is_one_the_full_walk_finds_clean(value, ascii_only):
    body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert unstorable_body(body, "application/json") == unstorable_text(
        json.loads(body, strict=False)
    )
