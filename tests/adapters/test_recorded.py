"""Recorded upstream answers through every protocol adapter: the bytes in, our types out.

Each row names a fixture under ``tests/adapters/fixtures`` (a provider's answer as its
wire carries it) and says what the adapter must make of it: every choice's text,
reasoning, tool calls and finish reason, the usage numbers, a stream's chunks in order,
or the error of ours it raises. Rows for broken answers (wrong types at each level) pin
what the adapters do with them: a 502 ``bad_upstream_response`` naming the connection,
or a value read past. An adapter that lets a raw TypeError, KeyError, AttributeError or
ValueError escape has a defect; record it as a row marked
``pytest.mark.xfail(raises=..., strict=True, reason=...)`` asserting the 502, so the
list of defects stays explicit and each row fails (XPASS) once its defect is fixed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from _pytest.mark import ParameterSet

from chatgate.adapters import registry
from chatgate.adapters.engine_wire import parse_completion
from chatgate.config import Connection
from chatgate.engine.client import WorkerClient
from chatgate.errors import ChatgateError, InvalidRequestError, OverloadedError, UpstreamError
from chatgate.sources import SOURCES
from chatgate.types import ChatRequest
from chatgate.upstream import Credentials, SSEEvent, UpstreamRequest
from tests.adapters.recorded import (
    CALL_ID,
    RECENT,
    Like,
    Raises,
    Streamed,
    all_fixtures,
    answer,
    assembled_calls,
    chunk,
    fixture_bytes,
    fixture_json,
    read_stream,
    sse_events,
)

MODEL = "rec/m"
KEY = "sk-test-recorded-key-0042"
COMPLETION_ID = Like(r"chatcmpl-[0-9a-f]{24}")
# The source a fixture folder is read with, unless its row names another.
FOLDER_SOURCE = {"openai": "openai", "anthropic": "claude", "gemini": "google", "cohere": "cohere"}
# The constructors from before the registry, ``Adapter(connection, source, env)``.


def make_adapter(source_id: str) -> Any:
    """The one place an adapter is built, through the registry as the backends do."""
    source = SOURCES[source_id]
    base_url = None if source.default_base_url else "http://upstream.test/v1"
    connection = Connection(name="rec", source=source_id, api_key=KEY, base_url=base_url)
    return registry.make_adapter(connection, source, Credentials(key=KEY))


def worker() -> WorkerClient:
    """A client of the embedded engine's worker; only its answer readers are used."""
    return WorkerClient(Connection(name="local", source="local"), cast(Any, None), cast(Any, None))


def bad(says: str) -> Raises:
    """The 502 for an answer that is not the provider's protocol."""
    return Raises(UpstreamError, "bad_upstream_response", f"connection 'rec': {says}")


def engine_bad(says: str) -> Raises:
    """The 502 for an engine answer that is not llama.cpp's (no connection named)."""
    return Raises(UpstreamError, "bad_upstream_response", says)


def request(**fields: Any) -> ChatRequest:
    """A one-message request for *MODEL* with *fields*."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], **fields}
    return ChatRequest.model_validate(body)


# --- rows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One fixture and what it must turn into."""

    fixture: str
    expect: Any  # an answer's plain values, a Raises, or a stream's chunks
    source: str = ""
    asks: dict[str, Any] = field(default_factory=dict)  # request fields
    id: Any = None  # every chunk's id
    finished: bool = True
    done: bool = True
    raises: Raises | None = None  # what ends a stream
    calls: list[tuple[str, Any]] | None = None  # the tool calls a stream's pieces make

    @property
    def source_id(self) -> str:
        return self.source or FOLDER_SOURCE[self.fixture.split("/")[0]]


def c(
    content: str | None,
    finish: str | None,
    *,
    index: Any = 0,
    reasoning: Any = None,
    tools: list[list[Any]] | None = None,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One choice of an answer, as `recorded.answer` renders it."""
    out: dict[str, Any] = {"index": index, "content": content, "finish": finish}
    if reasoning is not None:
        out["reasoning"] = reasoning
    if tools is not None:
        out["tools"] = tools
    if logprobs is not None:
        out["logprobs"] = logprobs
    return out


def ok(
    fixture: str,
    choices: list[dict[str, Any]],
    *,
    id: str | Like,
    usage: tuple[int, int],
    created: Any = RECENT,
    fingerprint: Any = None,
    source: str = "",
    asks: dict[str, Any] | None = None,
) -> ParameterSet:
    """A whole answer that parses to *choices*."""
    expect: dict[str, Any] = {
        "id": id,
        "created": created,
        "model": MODEL,
        "usage": list(usage),
        "choices": choices,
    }
    if fingerprint is not None:
        expect["fingerprint"] = fingerprint
    return pytest.param(Case(fixture, expect, source, asks or {}), id=fixture)


def fails(
    fixture: str, raises: Raises, *, source: str = "", asks: dict[str, Any] | None = None
) -> ParameterSet:
    """A whole answer refused with an error of ours."""
    return pytest.param(Case(fixture, raises, source, asks or {}), id=fixture)


def stream(
    fixture: str,
    chunks: list[dict[str, Any]],
    *,
    id: Any = None,
    finished: bool = True,
    done: bool = True,
    raises: Raises | None = None,
    calls: list[tuple[str, Any]] | None = None,
    source: str = "",
    asks: dict[str, Any] | None = None,
) -> ParameterSet:
    """A stream that reads as *chunks* (then ends, or raises *raises*)."""
    case = Case(fixture, chunks, source, asks or {}, id, finished, done, raises, calls)
    return pytest.param(case, id=fixture)


ROLE = {"role": "assistant", "content": ""}
WEATHER = '{"city":"Paris","unit":"celsius"}'


# --- OpenAI Chat Completions and its dialects -------------------------------------------

OPENAI_ANSWERS = [
    ok(
        "openai/text.json",
        [c("Paris is the capital of France.", "stop")],
        id="chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        created=1741570283,
        usage=(24, 8),
        fingerprint="fp_06737a9306",
    ),
    ok(
        "openai/tool_calls.json",
        [
            c(
                None,
                "tool_calls",
                tools=[
                    ["call_Qk8Jv3XJ0pA1", "get_weather", WEATHER],
                    ["call_Zr2mW9bN4tE7", "get_time", '{"tz":"Europe/Paris"}'],
                ],
            )
        ],
        id="chatcmpl-Bx7tool",
        created=1741570300,
        usage=(82, 51),
        fingerprint="fp_50cad350e4",
    ),
    ok(
        "openai/length.json",
        [c("Once upon a time, in a", "length")],
        id="chatcmpl-len01",
        created=1741570310,
        usage=(12, 8),
    ),
    ok(
        "openai/content_filter.json",
        [c(None, "content_filter")],
        id="chatcmpl-azure-cf",
        created=1741570320,
        usage=(30, 0),
    ),
    ok(
        "openai/two_choices.json",
        [
            c(
                "Heads.",
                "stop",
                logprobs={
                    "content": [
                        {
                            "token": "Heads",
                            "logprob": -0.31,
                            "bytes": [72, 101, 97, 100, 115],
                            "top_logprobs": [],
                        },
                        {"token": ".", "logprob": -0.02, "bytes": [46], "top_logprobs": []},
                    ],
                    "refusal": None,
                },
            ),
            c("Tails.", "stop", index=1),
        ],
        id="chatcmpl-n2",
        created=1741570330,
        usage=(15, 6),
        fingerprint="fp_06737a9306",
    ),
    # The refusal text is not carried over: the client sees no content and no refusal.
    ok(
        "openai/refusal.json",
        [c(None, "stop")],
        id="chatcmpl-refuse",
        created=1741570340,
        usage=(40, 10),
        fingerprint="fp_50cad350e4",
    ),
    ok(
        "openai/deepseek_reasoning.json",
        [
            c(
                "9.11 is smaller than 9.8.",
                "stop",
                reasoning="Compare the tenths: 1 is less than 8, so 9.11 < 9.8.",
            )
        ],
        id="930c60df-bf64-41c9-a88e-3ec75f81e00e",
        created=1737521237,
        usage=(17, 121),
        fingerprint="fp_5417b77867_prod0225",
        source="deepseek",
    ),
    ok(
        "openai/mistral_thinking.json",
        [c("4", "stop", reasoning="The user wants a number. Two plus two is four.")],
        id="cf79f7daaee244b1a0ae5c7b1444424a",
        created=1751030000,
        usage=(10, 42),
        source="mistral",
    ),
    ok(
        "openai/mistral_model_length.json",
        [c("", "length", tools=[["D681PevKs", "get_weather", '{"city": "Paris"}']])],
        id="a1b2c3d4e5f6",
        created=1751030100,
        usage=(96, 31),
        source="mistral",
    ),
    ok(
        "openai/openrouter_reasoning.json",
        [c("Yes.", "stop", reasoning="A short question deserves a short answer.")],
        id="gen-1751040000-AbCdEfGhIjKlMnOp",
        created=1751040000,
        usage=(9, 31),
        source="openrouter",
    ),
    ok(
        "openai/arguments_object.json",
        [c("", "tool_calls", tools=[["call_x7y8z9", "get_weather", '{"city":"Paris","days":3}']])],
        id="chatcmpl-local-42",
        created=1751050000,
        usage=(150, 20),
        fingerprint="fp_ollama",
        source="custom",
    ),
    ok(
        "openai/custom_eos.json",
        [c("Done.", "stop")],
        id="chatcmpl-custom-7f3a",
        created=1751060000,
        usage=(20, 3),
        source="custom",
    ),
    # Broken answers.
    fails("openai/broken/not_object.json", bad("the answer is not a chat completion")),
    fails("openai/broken/error_body_200.json", bad("the answer is not a chat completion")),
    fails("openai/broken/choices_null.json", bad("the answer is not a chat completion")),
    # No choice at all is passed on as an answer with no choices.
    ok(
        "openai/broken/choices_empty.json",
        [],
        id="chatcmpl-empty",
        created=1751070001,
        usage=(5, 0),
    ),
    fails("openai/broken/choice_string.json", bad("an entry of 'choices' is a string")),
    fails("openai/broken/message_number.json", bad("'message' is a number")),
    ok(
        "openai/broken/message_null.json",
        [c(None, "stop")],
        id="chatcmpl-x",
        created=1751070004,
        usage=(0, 0),
    ),
    fails("openai/broken/content_number.json", bad("'content' is a number")),
    fails("openai/broken/usage_string.json", bad("'usage' is a string")),
    fails("openai/broken/usage_count_string.json", bad("'prompt_tokens' is a string")),
    fails("openai/broken/usage_count_list.json", bad("'prompt_tokens' is an array")),
    fails("openai/broken/tool_call_string.json", bad("an entry of 'tool_calls' is a string")),
    fails("openai/broken/function_string.json", bad("'function' is a string")),
    fails("openai/broken/created_string.json", bad("'created' is a string")),
    fails("openai/broken/index_string.json", bad("'index' is a string")),
]

OPENAI_STREAMS = [
    stream(
        "openai/stream_text.sse",
        [
            ROLE,
            {"content": "Bon"},
            {"content": "jour"},
            {"content": " !"},
            {"finish": "stop"},
            {"usage": [11, 3]},
        ],
        id="chatcmpl-B9Nstream",
    ),
    stream(
        "openai/stream_tools_crlf.sse",
        [
            {"role": "assistant", "tools": [[0, "call_Qk8Jv3XJ0pA1", "get_weather", ""]]},
            {"tools": [[0, None, None, '{"ci']]},
            {"tools": [[0, None, None, 'ty": "Par']]},
            {"tools": [[0, None, None, 'is"}']]},
            {"tools": [[1, "call_Zr2mW9bN4tE7", "get_time", ""]]},
            {"tools": [[1, None, None, '{"tz": ']]},
            {"tools": [[1, None, None, '"Europe/Paris"}']]},
            {"finish": "tool_calls"},
            {"usage": [82, 51]},
        ],
        id="chatcmpl-B9Ntools",
        calls=[("get_weather", {"city": "Paris"}), ("get_time", {"tz": "Europe/Paris"})],
    ),
    stream(
        "openai/stream_two_choices.sse",
        [
            ROLE,
            {"i": 1, **ROLE},
            {"i": 1, "content": "Tails"},
            {"content": "Heads"},
            {"finish": "stop"},
            {"i": 1, "content": "."},
            {"i": 1, "finish": "length"},
        ],
        id="chatcmpl-n2s",
        asks={"n": 2},
    ),
    stream(
        "openai/stream_deepseek_reasoning.sse",
        [
            {"role": "assistant"},
            {"reasoning": "Compare"},
            {"reasoning": " the tenths."},
            {"content": "9.8"},
            {"content": "", "finish": "stop", "usage": [17, 121]},
        ],
        id="5a1f0d2e-reason",
        source="deepseek",
    ),
    stream(
        "openai/stream_openrouter_error.sse",
        [
            {**ROLE, "reasoning": "Thinking"},
            {"role": "assistant", "content": "Half an ans"},
        ],
        id="gen-1751040100-QrStUvWxYz",
        finished=False,
        done=False,
        raises=Raises(UpstreamError, None, "upstream error in the stream: Provider returned error"),
        source="openrouter",
    ),
    stream(
        "openai/stream_error_event.sse",
        [{"role": "assistant", "content": "Hi"}],
        id="chatcmpl-err",
        finished=False,
        done=False,
        raises=Raises(UpstreamError, None, "in the stream: The server is overloaded, try again"),
    ),
    # Multi-line data joins with a newline; the last event needs no blank line after it.
    stream(
        "openai/stream_no_done.sse",
        [
            {"role": "assistant", "content": "two lines"},
            {"content": "", "finish": "stop", "usage": [4, 2]},
        ],
        id="chatcmpl-nodone",
        done=False,
    ),
    stream(
        "openai/stream_mistral_tool.sse",
        [
            ROLE,
            {
                "tools": [[0, "D681PevKs", "get_weather", '{"city": "Paris"}']],
                "finish": "tool_calls",
                "usage": [96, 31],
            },
        ],
        id="9d1f4cbd0e2f4f7a",
        calls=[("get_weather", {"city": "Paris"})],
        source="mistral",
    ),
    # Some OpenAI-compatible proxies write "" for "not yet": each such chunk reads as a
    # stop, and the reader says finished from the first chunk on.
    stream(
        "openai/stream_empty_finish.sse",
        [
            {"role": "assistant", "content": "Hel", "finish": "stop"},
            {"content": "lo", "finish": "stop"},
            {"finish": "stop", "usage": [3, 2]},
        ],
        id="chatcmpl-proxy-1",
        source="custom",
    ),
    # Usage only under ``x_groq`` (Groq's own member) is not read: no usage chunk.
    stream(
        "openai/stream_groq_x_usage.sse",
        [ROLE, {"content": "Fast."}, {"finish": "stop"}],
        id="chatcmpl-groq-1",
        source="groq",
    ),
    # Broken streams.
    stream(
        "openai/broken/stream_not_json.sse",
        [{"role": "assistant", "content": "Hi"}],
        id="chatcmpl-b1",
        finished=False,
        done=False,
        raises=bad("a stream event is not JSON: '<html>"),
    ),
    stream(
        "openai/broken/stream_scalar.sse",
        [],
        finished=False,
        done=False,
        raises=bad("a stream event is not a JSON object"),
    ),
    stream(
        "openai/broken/stream_choice_string.sse",
        [],
        finished=False,
        done=False,
        raises=bad("an entry of 'choices' is a string"),
    ),
    stream(
        "openai/broken/stream_delta_number.sse",
        [],
        finished=False,
        done=False,
        raises=bad("'delta' is a number"),
    ),
    stream(
        "openai/broken/stream_tool_delta_string.sse",
        [],
        finished=False,
        done=False,
        raises=bad("an entry of 'tool_calls' is a string"),
    ),
    stream(
        "openai/broken/stream_created_string.sse",
        [],
        finished=False,
        done=False,
        raises=bad("'created' is a string"),
    ),
    stream(
        "openai/broken/stream_usage_string.sse",
        [{"role": "assistant", "content": "ok", "finish": "stop"}],
        id="chatcmpl-b6",
        done=False,
        raises=bad("'usage' is a string"),
    ),
    # n=2, cut after choice 0 finished and choice 1 did not: the reader says finished
    # (any finish reason counts), so the cut is not reported as a broken stream.
    stream(
        "openai/broken/stream_two_choices_cut.sse",
        [
            ROLE,
            {"i": 1, **ROLE},
            {"content": "Heads"},
            {"finish": "stop"},
            {"i": 1, "content": "Tai"},
        ],
        id="chatcmpl-n2cut",
        done=False,
        asks={"n": 2},
    ),
]


# --- Anthropic Messages ----------------------------------------------------------------

ANTHROPIC_ANSWERS = [
    # Usage: input plus both cache counts (14 + 1200 + 3000).
    ok(
        "anthropic/text.json",
        [c("Paris is the capital of France.", "stop")],
        id="msg_01XFDUDYJgAACzvnptvVoYEL",
        usage=(4214, 9),
    ),
    ok(
        "anthropic/tool_use.json",
        [
            c(
                "I'll check both for you.",
                "tool_calls",
                tools=[
                    ["toolu_01A09q90qw90lq917835lq9", "get_weather", WEATHER],
                    ["toolu_01B7xk2m3n4p5q6r7s8t9u0v", "get_time", "{}"],
                ],
            )
        ],
        id="msg_01Aq9w938a90dw8q",
        usage=(472, 91),
    ),
    ok(
        "anthropic/thinking.json",
        [c("The answer is 4.", "stop", reasoning="Let me add the digits. 2 + 2 = 4.")],
        id="msg_01Think0001",
        usage=(30, 120),
    ),
    ok(
        "anthropic/max_tokens.json",
        [c("Once upon a time, in a land", "length")],
        id="msg_01Len",
        usage=(12, 8),
    ),
    ok(
        "anthropic/refusal.json",
        [c("", "content_filter")],
        id="msg_01Refuse",
        usage=(25, 0),
    ),
    ok(
        "anthropic/structured.json",
        [c('{"city":"Paris","days":3}', "stop")],
        id="msg_01Json",
        usage=(210, 30),
    ),
    ok(
        "anthropic/stop_sequence.json",
        [c("Item one\nItem two\n", "stop")],
        id="msg_01Stop",
        usage=(20, 7),
    ),
    # Server tool blocks are skipped; the text blocks on either side join with nothing.
    ok(
        "anthropic/pause_turn_server_tool.json",
        [c("Let me search for that.It is sunny.", "stop")],
        id="msg_01Search",
        usage=(6039, 931),
    ),
    ok(
        "anthropic/context_window.json",
        [c("The document continues", "length")],
        id="msg_01Window",
        usage=(199990, 10),
    ),
    fails(
        "anthropic/error_overloaded.json",
        Raises(OverloadedError, "upstream_overloaded", "upstream error: Overloaded"),
    ),
    fails(
        "anthropic/error_invalid_request.json",
        Raises(InvalidRequestError, "invalid_request_error", "text content blocks must be"),
    ),
    # Broken answers.
    fails("anthropic/broken/not_object.json", bad("the answer is a string")),
    fails("anthropic/broken/content_null.json", bad("the answer is not a Messages API message")),
    fails("anthropic/broken/content_string.json", bad("the answer is not a Messages API message")),
    fails("anthropic/broken/block_string.json", bad("an entry of 'content' is a string")),
    fails("anthropic/broken/tool_use_no_id.json", bad("'id' is null")),
    fails("anthropic/broken/text_number.json", bad("'text' is a number")),
    fails("anthropic/broken/usage_string.json", bad("'usage' is a string")),
    fails("anthropic/broken/usage_count_string.json", bad("'input_tokens' is a string")),
    # Blocks of unknown types (or none) are skipped; an unknown stop reason is a stop.
    ok(
        "anthropic/broken/unknown_blocks.json",
        [c("ok", "stop")],
        id="msg_b8",
        usage=(0, 0),
    ),
    # An error whose member is not an object: code "error", and the message quotes the
    # body's Python repr.
    fails(
        "anthropic/broken/error_not_object.json",
        Raises(UpstreamError, "error", "upstream error: {'type': 'error', 'error': 'boom'}"),
    ),
    fails("anthropic/broken/input_string.json", bad("'input' is a string")),
]

ANTHROPIC_STREAMS = [
    stream(
        "anthropic/stream_text.sse",
        [ROLE, {"content": "Bon"}, {"content": "jour !"}, {"finish": "stop", "usage": [125, 15]}],
        id="msg_01StreamText",
    ),
    stream(
        "anthropic/stream_tool_use.sse",
        [
            ROLE,
            {"content": "Checking."},
            {"tools": [[0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", ""]]},
            {"tools": [[0, None, None, '{"city": "Pa']]},
            {"tools": [[0, None, None, 'ris", "unit": "cel']]},
            {"tools": [[0, None, None, 'sius"}']]},
            {"tools": [[1, "toolu_01B7xk2m3n4p5q6r7s8t9u0v", "get_time", ""]]},
            {"tools": [[1, None, None, "{}"]]},
            {"finish": "tool_calls", "usage": [472, 89]},
        ],
        id="msg_014p7gG3wDgGV9EUtLvnow3U",
        calls=[("get_weather", {"city": "Paris", "unit": "celsius"}), ("get_time", {})],
    ),
    stream(
        "anthropic/stream_thinking.sse",
        [
            ROLE,
            {"reasoning": "Let me add "},
            {"reasoning": "the digits."},
            {"content": "4"},
            {"finish": "length", "usage": [30, 120]},
        ],
        id="msg_01Think",
    ),
    stream(
        "anthropic/stream_overloaded.sse",
        [ROLE, {"content": "Half"}],
        id="msg_01Oops",
        finished=False,
        done=False,
        raises=Raises(OverloadedError, "upstream_overloaded", "upstream error: Overloaded"),
    ),
    stream(
        "anthropic/stream_structured.sse",
        [
            ROLE,
            {"content": '{"city": "Paris", '},
            {"content": '"days": 3}'},
            {"finish": "stop", "usage": [210, 30]},
        ],
        id="msg_01JsonS",
    ),
    # Broken streams.
    stream(
        "anthropic/broken/stream_not_json.sse",
        [ROLE],
        id="msg_b10",
        finished=False,
        done=False,
        raises=bad("a stream event is not JSON"),
    ),
    stream(
        "anthropic/broken/stream_message_number.sse",
        [],
        finished=False,
        done=False,
        raises=bad("'message' is a number"),
    ),
    stream(
        "anthropic/broken/stream_delta_string.sse",
        [ROLE],
        id="msg_b11",
        finished=False,
        done=False,
        raises=bad("'delta' is a string"),
    ),
    stream(
        "anthropic/broken/stream_index_string.sse",
        [],
        finished=False,
        done=False,
        raises=bad("'index' is a string"),
    ),
    stream(
        "anthropic/broken/stream_usage_string.sse",
        [ROLE],
        id="msg_b12",
        finished=False,
        done=False,
        raises=bad("'usage' is a string"),
    ),
    stream(
        "anthropic/broken/stream_text_number.sse",
        [ROLE],
        id="msg_b13",
        finished=False,
        done=False,
        raises=bad("'text' is a number"),
    ),
    stream(
        "anthropic/broken/stream_array.sse",
        [],
        finished=False,
        done=False,
        raises=bad("a stream event is an array"),
    ),
]


# --- Gemini (AI Studio and Vertex AI) ---------------------------------------------------

GEMINI_ANSWERS = [
    # Completion tokens count the thoughts too (9 + 25).
    ok(
        "gemini/text.json",
        [c("Paris is the capital of France.", "stop")],
        id="kTq3aJXpLOmJ1dkP5LfSsQQ",
        usage=(8, 34),
    ),
    ok(
        "gemini/function_call.json",
        [
            c(
                None,
                "tool_calls",
                tools=[
                    [CALL_ID, "get_weather", WEATHER],
                    [CALL_ID, "get_time", "{}"],
                    [CALL_ID, "ping", "{}"],
                ],
            )
        ],
        id="fc-01",
        usage=(120, 30),
    ),
    ok(
        "gemini/thought.json",
        [c("4", "stop", reasoning="**Adding numbers**\n\nTwo and two make four.")],
        id="th-01",
        usage=(6, 51),
    ),
    ok(
        "gemini/max_tokens.json",
        [c("Once upon a time", "length")],
        id="len-01",
        usage=(5, 4),
    ),
    ok(
        "gemini/safety.json",
        [c("", "content_filter")],
        id="safe-01",
        usage=(14, 0),
    ),
    fails(
        "gemini/prompt_blocked.json",
        Raises(InvalidRequestError, "content_filter", "blocked the prompt (PROHIBITED_CONTENT)"),
    ),
    ok(
        "gemini/two_candidates.json",
        [c("Heads.", "stop"), c("Tails, and more", "length", index=1)],
        id="n2-01",
        usage=(7, 6),
    ),
    # A malformed function call is an ordinary stop with empty content.
    ok(
        "gemini/malformed_function_call.json",
        [c("", "stop")],
        id="mfc-01",
        usage=(120, 0),
    ),
    ok(
        "gemini/vertex_text.json",
        [c("Bonjour.", "stop")],
        id="vtx-aBcD",
        usage=(4, 2),
        source="vertexai",
    ),
    # Broken answers.
    fails("gemini/broken/not_object.json", bad("the answer is an array")),
    fails("gemini/broken/candidates_null.json", bad("'candidates' is null")),
    fails("gemini/broken/candidates_string.json", bad("'candidates' is a string")),
    fails("gemini/broken/candidates_object.json", bad("'candidates' is an object")),
    fails("gemini/broken/candidate_number.json", bad("an entry of 'candidates' is a number")),
    fails("gemini/broken/content_string.json", bad("'content' is a string")),
    fails("gemini/broken/part_plain_string.json", bad("an entry of 'parts' is a string")),
    fails("gemini/broken/part_string_with_text.json", bad("an entry of 'parts' is a string")),
    fails("gemini/broken/text_number.json", bad("'text' is a number")),
    fails("gemini/broken/function_call_string.json", bad("'functionCall' is a string")),
    fails("gemini/broken/args_string.json", bad("'args' is a string")),
    fails("gemini/broken/usage_string.json", bad("'usageMetadata' is a string")),
    fails("gemini/broken/usage_count_string.json", bad("'promptTokenCount' is a string")),
    fails("gemini/broken/finish_number.json", bad("'finishReason' is a number")),
]

GEMINI_STREAMS = [
    stream(
        "gemini/stream_text.sse",
        [
            ROLE,
            {"content": "Bon"},
            {"content": "jour"},
            {"content": " !"},
            {"finish": "stop", "usage": [8, 23]},
        ],
        id="s-text-01",
        done=False,
    ),
    stream(
        "gemini/stream_function_call.sse",
        [
            ROLE,
            {"content": "Checking."},
            {"tools": [[0, CALL_ID, "get_weather", WEATHER]]},
            {"tools": [[1, CALL_ID, "get_time", "{}"]]},
            {"finish": "tool_calls", "usage": [120, 30]},
        ],
        id="s-fc-01",
        done=False,
        calls=[("get_weather", {"city": "Paris", "unit": "celsius"}), ("get_time", {})],
    ),
    stream(
        "gemini/stream_thought.sse",
        [
            ROLE,
            {"reasoning": "**Adding**\n\nTwo and two"},
            {"reasoning": " make four."},
            {"content": "4"},
            {"finish": "stop", "usage": [6, 51]},
        ],
        id="s-th-01",
        done=False,
    ),
    stream(
        "gemini/stream_two_candidates.sse",
        [
            ROLE,
            {"content": "Heads"},
            {"i": 1, "content": "Tails"},
            {"content": "."},
            {"finish": "stop", "usage": [7, 3]},
            {"i": 1, "content": ", and"},
            {"i": 1, "finish": "length", "usage": [7, 6]},
        ],
        id="s-n2-01",
        done=False,
        asks={"n": 2},
    ),
    stream(
        "gemini/stream_error.sse",
        [ROLE, {"content": "Half"}],
        id="s-err-01",
        finished=False,
        done=False,
        raises=Raises(UpstreamError, None, "in the stream: The model is overloaded."),
    ),
    stream(
        "gemini/stream_prompt_blocked.sse",
        [],
        finished=False,
        done=False,
        raises=Raises(InvalidRequestError, "content_filter", "blocked the prompt (SAFETY)"),
    ),
    stream(
        "gemini/stream_safety.sse",
        [ROLE, {"content": "Here is how"}, {"finish": "content_filter", "usage": [9, 3]}],
        id="s-safe-01",
        done=False,
    ),
    stream(
        "gemini/stream_vertex.sse",
        [ROLE, {"content": "Bonjour"}, {"content": "."}, {"finish": "stop", "usage": [4, 2]}],
        id="vtx-s-01",
        done=False,
        source="vertexai",
    ),
    # Usage sent in an event after the finish reason is not read.
    stream(
        "gemini/stream_usage_after_finish.sse",
        [ROLE, {"content": "Hi"}, {"finish": "stop"}],
        id="sb-6",
        done=False,
    ),
    # Broken streams.
    stream(
        "gemini/broken/stream_not_json.sse",
        [ROLE, {"content": "Hi"}],
        id="sb-1",
        finished=False,
        done=False,
        raises=bad("a stream event is not JSON"),
    ),
    stream(
        "gemini/broken/stream_array.sse",
        [],
        finished=False,
        done=False,
        raises=bad("a stream event is an array"),
    ),
    # A null promptFeedback is as good as none: the event holds nothing to read.
    stream(
        "gemini/broken/stream_prompt_feedback_null.sse",
        [ROLE],
        id="sb-2",
        finished=False,
        done=False,
    ),
    stream(
        "gemini/broken/stream_candidate_number.sse",
        [],
        finished=False,
        done=False,
        raises=bad("an entry of 'candidates' is a number"),
    ),
    stream(
        "gemini/broken/stream_index_string.sse",
        [],
        finished=False,
        done=False,
        raises=bad("'index' is a string"),
    ),
    stream(
        "gemini/broken/stream_parts_object.sse",
        [],
        finished=False,
        done=False,
        raises=bad("'parts' is an object"),
    ),
]


# --- Cohere v2 chat --------------------------------------------------------------------

COHERE_ANSWERS = [
    # Usage: ``tokens`` when present, else ``billed_units``.
    ok(
        "cohere/text.json",
        [c("Paris is the capital of France.", "stop")],
        id="c14c80c3-18eb-4519-9460-6c92edd8cfb4",
        usage=(71, 7),
    ),
    ok(
        "cohere/tool_calls.json",
        [
            c(
                None,
                "tool_calls",
                reasoning="I will look up the weather and the time in Paris.",
                tools=[
                    ["get_weather_1byjy32y4hvq", "get_weather", WEATHER],
                    ["get_time_8f7r2k", "get_time", "{}"],
                ],
            )
        ],
        id="b5b0c7e8-tools",
        usage=(1042, 60),
    ),
    ok(
        "cohere/thinking.json",
        [c("4", "stop", reasoning="Two plus two is four.")],
        id="d1e2-thinking",
        usage=(500, 12),
    ),
    ok(
        "cohere/max_tokens.json",
        [c("Once upon a", "length")],
        id="e3f4-length",
        usage=(4, 3),
    ),
    # Cohere's ERROR finish reason reads as an ordinary stop.
    ok(
        "cohere/finish_error.json",
        [c("Partial", "stop")],
        id="f5a6-error",
        usage=(60, 1),
    ),
    ok(
        "cohere/stop_sequence.json",
        [c("Item one", "stop")],
        id="a7b8-stopseq",
        usage=(66, 3),
    ),
    # Broken answers.
    fails("cohere/broken/not_object.json", bad("the answer is not a Cohere chat response")),
    fails("cohere/broken/message_string.json", bad("the answer is not a Cohere chat response")),
    fails("cohere/broken/content_string.json", bad("'content' is a string")),
    fails("cohere/broken/block_number.json", bad("an entry of 'content' is a number")),
    fails("cohere/broken/tool_call_no_function.json", bad("'function' is null")),
    fails("cohere/broken/arguments_object.json", bad("'arguments' is an object")),
    fails("cohere/broken/usage_string.json", bad("'usage' is a string")),
    fails("cohere/broken/usage_tokens_string.json", bad("'tokens' is a string")),
    fails("cohere/broken/usage_count_string.json", bad("'input_tokens' is a string")),
    fails("cohere/broken/text_number.json", bad("'text' is a number")),
]

COHERE_STREAMS = [
    stream(
        "cohere/stream_text.sse",
        [ROLE, {"content": "Bon"}, {"content": "jour !"}, {"finish": "stop", "usage": [69, 3]}],
        id="29f14a5a-11de-4cae-9800-25e4747408ea",
    ),
    stream(
        "cohere/stream_tool_calls.sse",
        [
            ROLE,
            {"reasoning": "I will look"},
            {"reasoning": " up the weather."},
            {"tools": [[0, "get_weather_nsz5zm3w56q3", "get_weather", ""]]},
            {"tools": [[0, None, None, '{\n    "ci']]},
            {"tools": [[0, None, None, 'ty": "Paris"\n}']]},
            {"tools": [[1, "get_time_8f7r2k", "get_time", ""]]},
            {"tools": [[1, None, None, "{}"]]},
            {"finish": "tool_calls", "usage": [1042, 60]},
        ],
        id="7c2b-tools",
        calls=[("get_weather", {"city": "Paris"}), ("get_time", {})],
    ),
    stream(
        "cohere/stream_thinking.sse",
        [
            ROLE,
            {"reasoning": "Two plus two"},
            {"reasoning": " is four."},
            {"content": "4"},
            {"finish": "length", "usage": [500, 12]},
        ],
        id="8d3c-think",
    ),
    stream(
        "cohere/stream_citations.sse",
        [ROLE, {"content": "Paris"}, {"content": " it is."}, {"finish": "stop", "usage": [5, 3]}],
        id="9e4d-cite",
    ),
    stream(
        "cohere/stream_error.sse",
        [ROLE, {"content": "Half"}],
        id="0f5e-err",
        finished=False,
        done=False,
        raises=Raises(UpstreamError, None, "in the stream: internal server error, please try"),
    ),
    # Broken streams.
    stream(
        "cohere/broken/stream_not_json.sse",
        [ROLE],
        id="cbs-1",
        finished=False,
        done=False,
        raises=bad("a stream event is not JSON"),
    ),
    stream(
        "cohere/broken/stream_delta_string.sse",
        [],
        finished=False,
        done=False,
        raises=bad("'delta' is a string"),
    ),
    stream(
        "cohere/broken/stream_content_string.sse",
        [],
        finished=False,
        done=False,
        raises=bad("'content' is a string"),
    ),
    stream(
        "cohere/broken/stream_tool_calls_list.sse",
        [],
        finished=False,
        done=False,
        raises=bad("'tool_calls' is an array"),
    ),
    stream(
        "cohere/broken/stream_array.sse",
        [],
        finished=False,
        done=False,
        raises=bad("a stream event is an array"),
    ),
]


# --- the embedded engine (llama.cpp's server) -------------------------------------------

ONE_ALTERNATIVE = {
    "content": [
        {
            "token": " Paris",
            "logprob": -0.05,
            "bytes": [32, 80, 97, 114, 105, 115],
            "top_logprobs": [
                {"token": " Paris", "logprob": -0.05, "bytes": [32, 80, 97, 114, 105, 115]}
            ],
        }
    ],
    "refusal": None,
}
LOGPROBS = {"logprobs": True, "top_logprobs": 1}

# The native ``POST /completion`` answer (`engine_wire.parse_completion`).
ENGINE_COMPLETIONS = [
    ok(
        "engine/completion_eos.json",
        [c(" Paris is the capital of France.", "stop")],
        id=COMPLETION_ID,
        usage=(21, 8),
    ),
    ok(
        "engine/completion_limit.json",
        [c("Once upon a time", "length")],
        id=COMPLETION_ID,
        usage=(9, 4),
    ),
    ok(
        "engine/completion_word.json",
        [c("Item one\nItem two\n###", "stop")],
        id=COMPLETION_ID,
        usage=(15, 7),
        asks={"include_stop_str_in_output": True},
    ),
    ok(
        "engine/completion_logprobs.json",
        [c(" Paris", "length", logprobs=ONE_ALTERNATIVE)],
        id=COMPLETION_ID,
        usage=(10, 1),
        asks=LOGPROBS,
    ),
    fails(
        "engine/broken/completion_not_object.json",
        engine_bad("not a completion"),
    ),
    fails(
        "engine/broken/completion_content_number.json",
        engine_bad("not a completion"),
    ),
    fails(
        "engine/broken/completion_no_counts.json",
        engine_bad("no token counts"),
    ),
    fails(
        "engine/broken/completion_logprob_string.json",
        engine_bad("a log-probability of the wrong shape"),
        asks=LOGPROBS,
    ),
    fails(
        "engine/broken/completion_logprob_null.json",
        engine_bad("a log-probability of the wrong shape"),
        asks=LOGPROBS,
    ),
    fails(
        "engine/broken/completion_probabilities_object.json",
        engine_bad("log-probabilities of the wrong shape"),
        asks=LOGPROBS,
    ),
    fails(
        "engine/broken/completion_alternatives_string.json",
        engine_bad("alternatives of the wrong shape"),
        asks=LOGPROBS,
    ),
]

# The native stream, through `WorkerClient.native_chunks` (usage comes last, on its own).
ENGINE_NATIVE_STREAMS = [
    stream(
        "engine/native_stream.sse",
        [
            ROLE,
            {"content": " Paris"},
            {"content": " is"},
            {"content": " lovely."},
            {"finish": "stop"},
            {"usage": [21, 6]},
        ],
        id=COMPLETION_ID,
    ),
    stream(
        "engine/native_stream_word.sse",
        [
            ROLE,
            {"content": "Item one\n"},
            {"content": "###"},
            {"finish": "stop"},
            {"usage": [15, 4]},
        ],
        id=COMPLETION_ID,
        asks={"include_stop_str_in_output": True},
    ),
    stream(
        "engine/native_stream_logprobs.sse",
        [
            ROLE,
            {"content": " Paris", "logprobs": ONE_ALTERNATIVE},
            {"finish": "length"},
            {"usage": [10, 1]},
        ],
        id=COMPLETION_ID,
        asks=LOGPROBS,
    ),
    stream(
        "engine/broken/native_stream_not_json.sse",
        [ROLE, {"content": "Hi"}],
        id=COMPLETION_ID,
        raises=engine_bad("a stream event that is not JSON"),
    ),
    stream(
        "engine/broken/native_stream_no_counts.sse",
        [ROLE, {"content": "Hi"}],
        id=COMPLETION_ID,
        raises=engine_bad("no token counts"),
    ),
    stream(
        "engine/broken/native_stream_content_null.sse",
        [],
        raises=engine_bad("a stream event that is not a completion"),
    ),
    stream(
        "engine/broken/native_stream_truncated.sse",
        [ROLE, {"content": "Hi"}, {"content": " there"}],
        id=COMPLETION_ID,
        raises=Raises(UpstreamError, "upstream_stream_broken", "ended before the answer"),
    ),
    stream(
        "engine/broken/native_stream_logprob_string.sse",
        [],
        raises=engine_bad("a log-probability of the wrong shape"),
        asks=LOGPROBS,
    ),
]

# The worker's OpenAI-shaped chat route, through `WorkerClient.parse_chat`.
ENGINE_CHATS = [
    # Asked for logprobs without top_logprobs: the alternatives the worker had to send
    # are trimmed away.
    ok(
        "engine/chat.json",
        [
            c(
                "Paris.",
                "stop",
                reasoning="The capital of France is Paris.",
                logprobs={
                    "content": [
                        {
                            "id": 7042,
                            "token": "Paris",
                            "bytes": [80, 97, 114, 105, 115],
                            "logprob": -0.11,
                            "top_logprobs": [],
                        },
                        {
                            "id": 13,
                            "token": ".",
                            "bytes": [46],
                            "logprob": -0.01,
                            "top_logprobs": [],
                        },
                    ]
                },
            )
        ],
        id="chatcmpl-Xa8sd7f6g5h4j3k2",
        created=1751110000,
        usage=(20, 12),
        fingerprint="b5600-1a2b3c4d",
        asks={"logprobs": True},
    ),
    ok(
        "engine/chat_tool_call.json",
        [
            c(
                None,
                "tool_calls",
                tools=[["kPz3vB8qLw1mN5rT7yU9iO2aS4dF6gH0", "get_weather", '{"city":"Paris"}']],
            )
        ],
        id="chatcmpl-Tool0000000000001",
        created=1751110010,
        usage=(150, 18),
        fingerprint="b5600-1a2b3c4d",
    ),
    fails(
        "engine/broken/chat_choice_string.json",
        Raises(UpstreamError, "bad_upstream_response", "connection 'local': an entry of 'choices'"),
    ),
]

# The chat route's stream, through `WorkerClient.chat_chunks`: our own role chunk and id
# first, the worker's role chunk left out, usage on its own.
ENGINE_CHAT_STREAMS = [
    stream(
        "engine/chat_stream.sse",
        [
            ROLE,
            {"reasoning": "Capital?"},
            {"content": "Paris"},
            {"content": "."},
            {"finish": "stop"},
            {"usage": [20, 4]},
        ],
        id=COMPLETION_ID,
    ),
    stream(
        "engine/chat_stream_tool.sse",
        [
            ROLE,
            {"tools": [[0, "kPz3vB8qLw1mN5rT", "get_weather", '{"ci']]},
            {"tools": [[0, None, None, 'ty":"Paris"}']]},
            {"finish": "tool_calls"},
            {"usage": [150, 18]},
        ],
        id=COMPLETION_ID,
        calls=[("get_weather", {"city": "Paris"})],
    ),
    stream(
        "engine/chat_stream_error_data.sse",
        [ROLE, {"content": "Hi"}],
        id=COMPLETION_ID,
        raises=Raises(UpstreamError, None, "in the stream: Context size has been exceeded."),
    ),
    # Older llama.cpp servers send a stream error as an ``error:`` field, which SSE
    # ignores: the engine's words are lost and the stream reads as cut short.
    stream(
        "engine/chat_stream_error_field.sse",
        [ROLE, {"content": "Hi"}],
        id=COMPLETION_ID,
        raises=Raises(UpstreamError, "upstream_stream_broken", "ended before the answer"),
    ),
    stream(
        "engine/broken/chat_stream_truncated.sse",
        [ROLE, {"content": "Hi"}],
        id=COMPLETION_ID,
        raises=Raises(UpstreamError, "upstream_stream_broken", "ended before the answer"),
    ),
]

ANSWERS = OPENAI_ANSWERS + ANTHROPIC_ANSWERS + GEMINI_ANSWERS + COHERE_ANSWERS
STREAMS = OPENAI_STREAMS + ANTHROPIC_STREAMS + GEMINI_STREAMS + COHERE_STREAMS
ENGINE = ENGINE_COMPLETIONS + ENGINE_NATIVE_STREAMS + ENGINE_CHATS + ENGINE_CHAT_STREAMS
# Streams written with CRLF line ends, as Google sends them.
CRLF = [
    "openai/stream_tools_crlf.sse",
    "gemini/stream_text.sse",
    "gemini/stream_function_call.sse",
    "gemini/stream_thought.sse",
    "gemini/stream_two_candidates.sse",
    "gemini/stream_error.sse",
    "gemini/stream_prompt_blocked.sse",
    "gemini/stream_safety.sse",
]


# --- tests -----------------------------------------------------------------------------


def check_answer(case: Case, parse: Any) -> None:
    """*parse* (of the fixture's JSON) gives the row's answer, or raises its error."""
    data = fixture_json(case.fixture)
    if isinstance(case.expect, Raises):
        with pytest.raises(ChatgateError) as caught:
            parse(data)
        case.expect.check(caught.value)
        return
    assert answer(parse(data)) == case.expect


def check_stream(case: Case, got: Streamed, *, flags: bool = True) -> None:
    """A stream read as the row says: its chunks, how it ended, its tool calls."""
    if case.raises is not None:
        case.raises.check(got.error)
    else:
        assert got.error is None, f"{type(got.error).__name__}: {got.error}"
    assert [chunk(item) for item in got.chunks] == case.expect
    if flags:
        assert (got.finished, got.done) == (case.finished, case.done)
    if case.id is not None:
        assert [item.id for item in got.chunks] == [case.id] * len(got.chunks)
    assert all(item.model == MODEL for item in got.chunks)
    if case.calls is not None:
        assert assembled_calls(got.chunks) == case.calls


@pytest.mark.parametrize("case", ANSWERS)
def test_answer(case: Case) -> None:
    adapter = make_adapter(case.source_id)
    check_answer(case, lambda data: adapter.parse_response(data, MODEL))


@pytest.mark.parametrize("case", STREAMS)
def test_stream(case: Case) -> None:
    reader = make_adapter(case.source_id).reader(request(stream=True, **case.asks))
    check_stream(case, read_stream(reader, case.fixture))


@pytest.mark.parametrize("case", ENGINE_COMPLETIONS)
def test_engine_completion(case: Case) -> None:
    ask = request(**case.asks)
    check_answer(case, lambda data: parse_completion(data, ask))


@pytest.mark.parametrize("case", ENGINE_CHATS)
def test_engine_chat(case: Case) -> None:
    client, ask = worker(), request(**case.asks)
    check_answer(case, lambda data: client.parse_chat(data, ask))


async def _engine_stream(case: Case, monkeypatch: pytest.MonkeyPatch, *, native: bool) -> None:
    client = worker()
    events = sse_events(case.fixture)

    async def replay(upstream: UpstreamRequest) -> AsyncIterator[SSEEvent]:
        for event in events:
            yield event

    monkeypatch.setattr(client, "_events", replay)
    ask = request(stream=True, **case.asks)
    upstream = UpstreamRequest("POST", "http://127.0.0.1/engine")
    chunks = client.native_chunks(upstream, ask) if native else client.chat_chunks(upstream, ask)
    got = Streamed()
    try:
        async for item in chunks:
            got.chunks.append(item)
    except ChatgateError as exc:
        got.error = exc
    check_stream(case, got, flags=False)


@pytest.mark.parametrize("case", ENGINE_NATIVE_STREAMS)
async def test_engine_native_stream(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    await _engine_stream(case, monkeypatch, native=True)


@pytest.mark.parametrize("case", ENGINE_CHAT_STREAMS)
async def test_engine_chat_stream(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    await _engine_stream(case, monkeypatch, native=False)


def test_every_fixture_has_exactly_one_row() -> None:
    rows = [cast(Case, row.values[0]).fixture for row in ANSWERS + STREAMS + ENGINE]
    assert sorted(rows) == sorted(all_fixtures())


@pytest.mark.parametrize("name", CRLF)
def test_crlf_fixtures_keep_their_line_ends(name: str) -> None:
    data = fixture_bytes(name)
    assert b"\r\n\r\n" in data
    assert data.count(b"\n") == data.count(b"\r\n")
