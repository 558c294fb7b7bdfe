"""Upstream answers with a value of the wrong type at any level, whole and streamed.

Every adapter's `parse_response` and stream reader must turn such an answer into a 502
naming the connection (``bad_upstream_response``), or read past a value it may ignore;
never raise a Python error, and never hand on a value of the wrong type. Each good
answer below is mutated at every position with every JSON kind it does not have there;
the table after it names the cases that must be refused outright.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, get_args

import orjson
import pytest

from chatgate.adapters.engine_wire import CompletionStream, parse_completion
from chatgate.adapters.registry import make_adapter
from chatgate.adapters.wire import WireAdapter
from chatgate.config import Connection
from chatgate.errors import ChatgateError, UpstreamError
from chatgate.sources import SOURCES
from chatgate.types import ChatChunk, ChatRequest, ChatResponse, FinishReason, ToolCall, Usage
from chatgate.upstream import Credentials, SSEEvent

Path = tuple[str | int, ...]
WRONG: list[Any] = [None, "x", 7, 1.5, True, [], {}, ["x"], {"k": "x"}]
FINISHES = set(get_args(FinishReason))
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}

GOOD: dict[str, Any] = {
    "openai": {
        "id": "chatcmpl-1",
        "created": 1700000000,
        "system_fingerprint": "fp",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi", "tool_calls": [CALL]},
                "finish_reason": "tool_calls",
                "logprobs": {"content": [{"token": "Hi", "logprob": -0.1, "top_logprobs": []}]},
            },
            {
                "index": 1,
                "message": {
                    "content": [
                        {"type": "text", "text": "Yo"},
                        {"type": "thinking", "thinking": [{"type": "text", "text": "hm"}]},
                    ],
                    "reasoning_content": "so",
                },
                "finish_reason": "stop",
            },
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    },
    "claude": {
        "id": "msg_1",
        "type": "message",
        "content": [
            {"type": "thinking", "thinking": "hm"},
            {"type": "text", "text": "Hi"},
            {"type": "tool_use", "id": "tu_1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "cache_read_input_tokens": 1, "output_tokens": 4},
    },
    "google": {
        "responseId": "r1",
        "candidates": [
            {
                "index": 0,
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "hm", "thought": True},
                        {"text": "Hi"},
                        {"functionCall": {"name": "f", "args": {"a": 1}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4},
    },
    "cohere": {
        "id": "c1",
        "finish_reason": "TOOL_CALL",
        "message": {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "Hi"}],
            "tool_plan": "I will call f.",
            "tool_calls": [CALL],
        },
        "usage": {"tokens": {"input_tokens": 3, "output_tokens": 4}},
    },
}


def claude(kind: str, **fields: Any) -> tuple[str | None, Any]:
    return kind, {"type": kind, **fields}


def cohere(kind: str, delta: Any = None, **fields: Any) -> tuple[str | None, Any]:
    return None, {"type": kind, "delta": delta, **fields}


TOOL_DELTA = {"index": 0, "id": "c", "function": {"name": "f", "arguments": ""}}
GEMINI_CALL = {"content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]}}
STREAMS: dict[str, list[tuple[str | None, Any]]] = {
    "openai": [
        (None, {"id": "c1", "created": 1, "choices": [{"index": 0, "delta": {"role": "x"}}]}),
        (None, {"choices": [{"delta": {"content": "Hi", "reasoning_content": "hm"}}]}),
        (None, {"choices": [{"delta": {"tool_calls": [TOOL_DELTA]}, "finish_reason": "stop"}]}),
        (None, {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
    ],
    "claude": [
        claude("message_start", message={"id": "m", "usage": {"input_tokens": 3}}),
        claude("content_block_start", index=0, content_block={"type": "text", "text": "H"}),
        claude("content_block_delta", index=0, delta={"type": "text_delta", "text": "i"}),
        claude("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "h"}),
        claude("content_block_start", index=1, content_block={"type": "tool_use", "name": "f"}),
        claude(
            "content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": "{}"}
        ),
        claude("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 4}),
        claude("message_stop"),
    ],
    "google": [
        (None, {"responseId": "r", "candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}),
        (None, {"candidates": [{"index": 0, **GEMINI_CALL, "finishReason": "STOP"}]}),
        (None, {"usageMetadata": {"promptTokenCount": 3, "thoughtsTokenCount": 1}}),
    ],
    "cohere": [
        cohere("message-start", id="c"),
        cohere("content-delta", {"message": {"content": {"text": "Hi", "thinking": "hm"}}}),
        cohere("tool-plan-delta", {"message": {"tool_plan": "go"}}),
        cohere("tool-call-start", {"message": {"tool_calls": TOOL_DELTA}}, index=0),
        cohere(
            "message-end", {"finish_reason": "TOOL_CALL", "usage": {"tokens": {"input_tokens": 3}}}
        ),
    ],
}

STREAMED = ChatRequest.model_validate(
    {"model": "up/m", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
)
# (source, answer) that must be refused as a lie, whatever else the parser might do.
LIES: list[tuple[str, Any]] = [
    ("openai", "x"),
    ("openai", {"choices": "x"}),
    ("openai", {"choices": ["x"]}),
    ("openai", {"choices": [{"message": 5}]}),
    ("openai", {"choices": [{"message": {"content": 7}}]}),
    ("openai", {"choices": [{"message": {"content": [7]}}]}),
    ("openai", {"choices": [{"message": {"tool_calls": "x"}}]}),
    ("openai", {"choices": [{"message": {"tool_calls": [{"function": {"arguments": 5}}]}}]}),
    ("openai", {"choices": [{"message": {}, "finish_reason": 3}]}),
    ("openai", {"choices": [{"message": {}, "logprobs": {"content": [{"logprob": "x"}]}}]}),
    ("openai", {"choices": [], "usage": "x"}),
    ("openai", {"choices": [], "usage": {"prompt_tokens": "3"}}),
    ("openai", {"choices": [], "created": "today"}),
    ("claude", ["x"]),
    ("claude", {"content": 7}),
    ("claude", {"content": ["x"]}),
    ("claude", {"content": [{"type": "text", "text": 7}]}),
    ("claude", {"content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}),
    ("claude", {"content": [{"type": "tool_use", "name": "f"}]}),
    ("claude", {"content": [], "usage": "x"}),
    ("claude", {"content": [], "usage": {"output_tokens": [1]}}),
    ("google", None),
    ("google", {"candidates": None}),
    ("google", {"candidates": "x"}),
    ("google", {"candidates": ["x"]}),
    ("google", {"candidates": [{"content": 7}]}),
    ("google", {"candidates": [{"content": {"parts": [5]}}]}),
    ("google", {"candidates": [{"content": {"parts": [{"text": 5}]}}]}),
    ("google", {"candidates": [{"content": {"parts": [{"functionCall": {"args": "x"}}]}}]}),
    ("google", {"candidates": [{"finishReason": 1}], "usageMetadata": "x"}),
    ("cohere", 5),
    ("cohere", {"message": "x"}),
    ("cohere", {"message": {"content": 7}}),
    ("cohere", {"message": {"tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}}),
    ("cohere", {"message": {"tool_calls": [{"id": "t"}]}}),
    ("cohere", {"message": {}, "usage": "x"}),
    ("cohere", {"message": {}, "usage": {"tokens": {"input_tokens": "3"}}}),
]
STREAM_LIES: list[tuple[str, Any]] = [
    ("openai", "x"),
    ("openai", {"choices": [7]}),
    ("openai", {"choices": [{"delta": "x"}]}),
    ("openai", {"choices": [{"delta": {"tool_calls": [{"index": "0"}]}}]}),
    ("claude", "x"),
    ("claude", {"type": "message_start", "message": "x"}),
    ("claude", {"type": "content_block_start", "index": "1", "content_block": {}}),
    ("claude", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": 7}}),
    ("claude", {"type": "message_delta", "usage": {"output_tokens": "4"}}),
    ("google", []),
    ("google", {"candidates": None}),
    ("google", {"candidates": [{"content": {"parts": "x"}}]}),
    ("google", {"promptFeedback": "x"}),
    ("cohere", "x"),
    ("cohere", {"type": "content-delta", "delta": "x"}),
    ("cohere", {"type": "content-delta", "delta": {"message": {"content": {"text": 7}}}}),
    ("cohere", {"type": "tool-call-delta", "delta": {"message": {"tool_calls": []}}}),
]


def adapter(source: str) -> WireAdapter:
    connection = Connection(name="up", source=source, api_key="k-1")
    return make_adapter(connection, SOURCES[source], Credentials(key="k-1"))


def paths(value: Any, here: Path = ()) -> Iterator[Path]:
    """Every position in *value*, itself first."""
    yield here
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, (*here, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, (*here, index))


def put(value: Any, path: Path, new: Any) -> Any:
    """A copy of *value* with *new* at *path*."""
    if not path:
        return copy.deepcopy(new)
    out = copy.deepcopy(value)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = copy.deepcopy(new)
    return out


def at(value: Any, path: Path) -> Any:
    for step in path:
        value = value[step]
    return value


def kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    return "number" if isinstance(value, int | float) else type(value).__name__


def mutations(value: Any) -> Iterator[tuple[Path, Any]]:
    for path in paths(value):
        here = kind(at(value, path))
        for wrong in WRONG:
            if kind(wrong) != here:
                yield path, wrong


def optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def check_usage(usage: Usage | None) -> None:
    if usage is not None:
        assert type(usage.prompt_tokens) is int and type(usage.completion_tokens) is int


def check_response(answer: ChatResponse) -> None:
    """Every field of *answer* has its declared type."""
    assert isinstance(answer.id, str) and type(answer.created) is int
    assert optional_str(answer.system_fingerprint)
    check_usage(answer.usage)
    for choice in answer.choices:
        assert type(choice.index) is int and choice.finish_reason in FINISHES | {None}
        assert choice.logprobs is None or isinstance(choice.logprobs, dict)
        message = choice.message
        assert optional_str(message.content) and optional_str(message.reasoning_content)
        assert all(isinstance(call, ToolCall) for call in message.tool_calls or [])


def check_chunk(chunk: ChatChunk) -> None:
    """Every field of *chunk* has its declared type."""
    assert isinstance(chunk.id, str) and type(chunk.created) is int
    check_usage(chunk.usage)
    for choice in chunk.choices:
        assert type(choice.index) is int and choice.finish_reason in FINISHES | {None}
        delta = choice.delta
        assert delta.role in (None, "assistant")
        assert optional_str(delta.content) and optional_str(delta.reasoning_content)
        for call in delta.tool_calls or []:
            assert type(call.index) is int
            assert optional_str(call.id) and optional_str(call.name)
            assert optional_str(call.arguments)


def refused_well(error: ChatgateError) -> None:
    """A refusal an upstream's answer may cause: its own error, or a lie naming it."""
    if isinstance(error, UpstreamError) and error.code == "bad_upstream_response":
        assert "connection 'up'" in error.message


def feed(source: str, events: list[tuple[str | None, Any]]) -> None:
    reader = adapter(source).reader(STREAMED)
    for name, data in events:
        for chunk in reader.feed(SSEEvent(name, orjson.dumps(data).decode())):
            check_chunk(chunk)


@pytest.mark.parametrize("source", GOOD)
def test_the_good_answers_are_read(source: str) -> None:
    check_response(adapter(source).parse_response(GOOD[source], "up/m"))
    feed(source, STREAMS[source])


@pytest.mark.parametrize("source", GOOD)
def test_a_wrong_type_anywhere_in_an_answer_is_never_a_crash(source: str) -> None:
    parser = adapter(source)
    for path, wrong in mutations(GOOD[source]):
        broken = put(GOOD[source], path, wrong)
        try:
            check_response(parser.parse_response(broken, "up/m"))
        except ChatgateError as error:
            refused_well(error)
        except Exception as error:  # any other error is the bug this test is for
            pytest.fail(f"{path} = {wrong!r}: {type(error).__name__}: {error}")


@pytest.mark.parametrize("source", STREAMS)
def test_a_wrong_type_anywhere_in_a_stream_is_never_a_crash(source: str) -> None:
    events = STREAMS[source]
    for position, (name, data) in enumerate(events):
        for path, wrong in mutations(data):
            broken = [*events[:position], (name, put(data, path, wrong)), *events[position + 1 :]]
            try:
                feed(source, broken)
            except ChatgateError as error:
                refused_well(error)
            except Exception as error:  # any other error is the bug this test is for
                pytest.fail(f"event {position} {path} = {wrong!r}: {type(error).__name__}")


def must_lie(call: Any) -> None:
    with pytest.raises(UpstreamError) as caught:
        call()
    assert caught.value.code == "bad_upstream_response"
    assert "connection 'up'" in caught.value.message


@pytest.mark.parametrize(("source", "answer"), LIES, ids=repr)
def test_answers_of_the_wrong_shape_are_lies(source: str, answer: Any) -> None:
    must_lie(lambda: adapter(source).parse_response(answer, "up/m"))


@pytest.mark.parametrize(("source", "event"), STREAM_LIES, ids=repr)
def test_stream_events_of_the_wrong_shape_are_lies(source: str, event: Any) -> None:
    must_lie(lambda: feed(source, [(None, event)]))


def test_tool_arguments_sent_as_an_object_are_read_where_servers_do_that() -> None:
    call = {"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}
    answer = {"choices": [{"message": {"tool_calls": [call]}}]}
    parsed = adapter("openai").parse_response(answer, "up/m")
    tool_calls = parsed.choices[0].message.tool_calls
    assert tool_calls is not None and tool_calls[0].function.arguments == '{"a":1}'


@pytest.mark.parametrize(
    "data",
    [
        {"content": "x", "tokens_evaluated": "3", "tokens_predicted": 1},
        {"content": "x", "tokens_evaluated": 3, "tokens_predicted": 1, "stop_type": 7},
        {
            "content": "x",
            "tokens_evaluated": 3,
            "tokens_predicted": 1,
            "completion_probabilities": [{"token": "x", "logprob": "low", "top_logprobs": {}}],
        },
        {"content": 5},
        [],
    ],
    ids=repr,
)
def test_the_engine_answers_of_the_wrong_shape_are_lies(data: Any) -> None:
    asked = ChatRequest.model_validate(
        {"model": "local/m", "messages": [{"role": "user", "content": "Hi"}], "logprobs": True}
    )
    for parse in (
        lambda: parse_completion(data, asked),
        lambda: CompletionStream(asked).feed({**data, "stop": True} if data else data),
    ):
        with pytest.raises(UpstreamError) as caught:
            parse()
        assert caught.value.code == "bad_upstream_response"
