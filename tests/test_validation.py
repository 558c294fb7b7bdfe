"""Request validation: every problem named by its parameter path."""

from __future__ import annotations

import pytest

from chatgate.errors import InvalidRequestError
from chatgate.types import ChatRequest, ImagePart, JSONSchemaFormat
from chatgate.validation import param_path, parse_chat_request

PARTS = {"content": [{"type": "text", "text": 1}, {"type": "image_url", "image_url": {}}]}
FORMAT = {"type": "json_schema", "json_schema": {"name": 5}}


@pytest.mark.parametrize(
    ("loc", "body", "path"),
    [
        (("model",), {"model": 1}, "model"),
        (("model",), {}, "model"),
        (("messages", 0, "content", "str"), {"messages": [PARTS]}, "messages[0].content"),
        (
            ("messages", 0, "content", "list[tagged-union[TextPart,ImagePart]]", 0, "text", "text"),
            {"messages": [PARTS]},
            "messages[0].content[0].text",
        ),
        (
            (
                "messages",
                0,
                "content",
                "list[tagged-union[A,B]]",
                1,
                "image_url",
                "image_url",
                "url",
            ),
            {"messages": [PARTS]},
            "messages[0].content[1].image_url.url",
        ),
        (
            ("response_format", "json_schema", "json_schema", "name"),
            {"response_format": FORMAT},
            "response_format.json_schema.name",
        ),
        ((), {}, None),
    ],
)
def test_param_path(loc: tuple[int | str, ...], body: object, path: str | None) -> None:
    assert param_path(loc, body) == path


def test_full_request_parses() -> None:
    raw = b"""{"model": "a/b", "messages": [
        {"role": "developer", "content": "rules"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:x"}}]},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}],
      "stop": "END", "temperature": 0.5, "n": 2, "seed": 3,
      "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
      "extra_thing": {"kept": true}}"""
    request = parse_chat_request(raw)
    assert request.stops == ["END"]
    assert isinstance(request.messages[1].content, list)
    assert isinstance(request.messages[1].content[1], ImagePart)
    assert request.messages[1].text() == "look"
    assert isinstance(request.response_format, JSONSchemaFormat)
    assert request.model_extra == {"extra_thing": {"kept": True}}
    assert request.model_name == "b"


def test_strict_types() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_chat_request(
            {"model": "a/b", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}
        )
    assert caught.value.param == "stream"
    assert caught.value.code == "invalid_type"


def test_completion_limit_prefers_max_completion_tokens() -> None:
    request = ChatRequest.model_validate(
        {
            "model": "a/b",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 5,
            "max_completion_tokens": 9,
        }
    )
    assert request.completion_limit == 9


def test_assistant_needs_content_or_tool_calls() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_chat_request({"model": "a/b", "messages": [{"role": "assistant"}]})
    assert caught.value.param == "messages[0]"
