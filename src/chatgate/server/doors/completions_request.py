"""An OpenAI Completions body (``POST /v1/completions``) as chatgate requests, and the
answer's pieces only this API has: ``echo``, integer ``logprobs`` and their shape.

A body holds one prompt or a list of them; each becomes one `ChatRequest` whose
``raw_prompt`` is the prompt (text backends and the embedded engine read it verbatim)
and whose one user message is the same text (what a chat backend reads). Everything
else in the body is a chat request field, validated as on ``/v1/chat/completions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chatgate.errors import InvalidRequestError
from chatgate.server.doors.text_doors import json_object_body
from chatgate.types import ChatRequest, FinishReason, Message
from chatgate.validation import parse_chat_request

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for this API
MAX_LOGPROBS = 5  # OpenAI's bound for this API
MAX_CHOICES = 128  # prompts times n: ChatRequest's bound on n, for the whole request
# The fields of this API that are not chat request fields (each read here).
OWN_FIELDS = ("prompt", "echo", "logprobs")
# Chat request fields that have no place in a Completions body.
NOT_HERE = {
    "messages": "'messages' belongs to /v1/chat/completions; this route takes 'prompt'",
    "raw_prompt": "'raw_prompt' is chatgate's own field; send the text as 'prompt'",
    "top_logprobs": "this API asks for alternatives with the integer 'logprobs' (0 to 5)",
}
# What a chat finish reason is called here (the API has no tool calls).
FINISHES: dict[str, str] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "stop",
    "function_call": "stop",
}


@dataclass(frozen=True, slots=True)
class Shape:
    """What the answer needs beyond chatgate's answer: the prompts (for ``echo``), the
    choices per prompt, and how many alternatives ``logprobs`` asked for."""

    prompts: tuple[str, ...] = ("",)
    n: int = 1
    echo: bool = False
    logprobs: int | None = None
    usage_chunks: bool = False

    def prompt_of(self, index: int) -> str:
        """The prompt of the choice at *index* (choices run prompt by prompt, n each)."""
        return self.prompts[min(index // self.n, len(self.prompts) - 1)]


@dataclass(frozen=True, slots=True)
class Decoded:
    """A Completions body as one chat request per prompt, and the answer's shape."""

    requests: list[ChatRequest]
    shape: Shape = field(default_factory=Shape)


def decode(raw: bytes) -> Decoded:
    """A Completions body, validated: a 400 naming the parameter otherwise."""
    body = json_object_body(raw)
    for name, why in NOT_HERE.items():
        if name in body:
            raise InvalidRequestError(
                f"unrecognized parameter: '{name}': {why}", param=name, code="unknown_parameter"
            )
    prompts = _prompts(body)
    echo = body.get("echo")
    if echo is not None and type(echo) is not bool:
        raise InvalidRequestError("'echo' must be a boolean", param="echo", code="invalid_type")
    logprobs = _logprobs(body.get("logprobs"))
    if echo and logprobs is not None:
        raise InvalidRequestError(
            "'echo' with 'logprobs' asks for the prompt's log-probabilities, which chatgate "
            "cannot get from its backends; ask for one of them",
            param="echo",
            code="unsupported_parameter",
        )
    fields = {k: v for k, v in body.items() if k not in OWN_FIELDS}
    if fields.get("max_tokens") is None:
        fields["max_tokens"] = DEFAULT_MAX_TOKENS
    if logprobs is not None:
        fields.update(logprobs=True, top_logprobs=logprobs)
    first = parse_chat_request(
        {**fields, "messages": [{"role": "user", "content": prompts[0]}], "raw_prompt": prompts[0]}
    )
    n = first.n or 1
    if n * len(prompts) > MAX_CHOICES:
        raise InvalidRequestError(
            f"{len(prompts)} prompts times n = {n} is {n * len(prompts)} choices; the "
            f"limit is {MAX_CHOICES}",
            param="prompt",
            code="invalid_value",
        )
    requests = [first]
    for prompt in prompts[1:]:
        message = Message(role="user", content=prompt)
        requests.append(first.without(messages=[message], raw_prompt=prompt))
    usage = bool(first.stream_options and first.stream_options.include_usage)
    shape = Shape(tuple(prompts), n, bool(echo), logprobs, usage)
    return Decoded(requests, shape)


def _prompts(body: dict[str, Any]) -> list[str]:
    if "prompt" not in body or body["prompt"] is None:
        raise InvalidRequestError(
            "missing required parameter: 'prompt'",
            param="prompt",
            code="missing_required_parameter",
        )
    prompt = body["prompt"]
    items = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(items, list) or not items:
        what = "an empty array" if isinstance(items, list) else type(prompt).__name__
        raise InvalidRequestError(
            f"'prompt' must be a string or an array of strings, not {what}",
            param="prompt",
            code="invalid_type",
        )
    for i, item in enumerate(items):
        where = "prompt" if isinstance(prompt, str) else f"prompt[{i}]"
        if type(item) is int or (isinstance(item, list) and all(type(t) is int for t in item)):
            raise InvalidRequestError(
                "token-id prompts are not supported: chatgate's backends take text, and ids "
                "turned back into text are not the same prompt; send the prompt as text "
                "(the llama.cpp door's POST /detokenize gives the text of ids)",
                param="prompt",
                code="unsupported_parameter",
            )
        if not isinstance(item, str):
            raise InvalidRequestError(
                f"'{where}' must be a string", param="prompt", code="invalid_type"
            )
        if not item:
            raise InvalidRequestError(
                f"'{where}' is empty: the model needs a text to continue",
                param="prompt",
                code="invalid_value",
            )
    return items


def _logprobs(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise InvalidRequestError(
            f"'logprobs' must be an integer from 0 to {MAX_LOGPROBS} (how many alternatives "
            "to show per token)",
            param="logprobs",
            code="invalid_type",
        )
    if not 0 <= value <= MAX_LOGPROBS:
        raise InvalidRequestError(
            f"'logprobs' must be from 0 to {MAX_LOGPROBS}, got {value}",
            param="logprobs",
            code="invalid_value",
        )
    return value


def finish_of(finish: FinishReason | None) -> str | None:
    """A chat finish reason as this API's."""
    return None if finish is None else FINISHES.get(finish, "stop")


class Offsets:
    """Where each choice's next token starts in its text, across a stream's chunks."""

    def __init__(self) -> None:
        self.at: dict[int, int] = {}

    def logprobs(self, index: int, chat: dict[str, Any] | None) -> dict[str, Any] | None:
        """Chat-style ``logprobs`` (``content`` entries) of choice *index* in this API's
        shape: ``tokens``, ``token_logprobs``, ``top_logprobs`` (a token → logprob map
        per position) and ``text_offset`` (each token's start in the choice's text)."""
        if chat is None:
            return None
        entries = [e for e in chat.get("content") or () if isinstance(e, dict)]
        offset = self.at.get(index, 0)
        out: dict[str, Any] = {
            "tokens": [],
            "token_logprobs": [],
            "top_logprobs": [],
            "text_offset": [],
        }
        for entry in entries:
            token = str(entry.get("token", ""))
            out["tokens"].append(token)
            out["token_logprobs"].append(entry.get("logprob"))
            out["top_logprobs"].append(
                {
                    str(alt.get("token", "")): alt.get("logprob")
                    for alt in entry.get("top_logprobs") or ()
                    if isinstance(alt, dict)
                }
            )
            out["text_offset"].append(offset)
            offset += len(token)
        self.at[index] = offset
        return out
