"""The embedded engine's wire protocol: llama.cpp's server API, without I/O.

The engine worker is llama.cpp's own server (``chatgate.engine.worker``). chatgate
speaks two of its routes:

- ``POST /v1/chat/completions`` for ordinary requests: the worker renders the model's
  chat template, tokenizes, batches and samples, and answers in OpenAI's shape, which
  the OpenAI adapter reads;
- ``POST /completion`` (its native route) when the prompt string is chatgate's to make:
  a request's own ``chat_template``, or ``include_stop_str_in_output``, which needs the
  native answer's ``stopping_word``. These answers are turned into chat answers here.

Each output constraint is enforced by the worker while it samples (`OutputContract`).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from chatgate.errors import InvalidRequestError, UpstreamError
from chatgate.output import OutputContract
from chatgate.types import (
    AssistantMessage,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FinishReason,
    Message,
    Usage,
)

# The request fields the engine honours (natively, or by chatgate around the worker).
SUPPORTED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "seed",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "user",
        "parallel_tool_calls",
        "prompt_post_processing",
        "guided_json",
        "guided_regex",
        "guided_choice",
        "guided_grammar",
        "guided_decoding_backend",
        "include_stop_str_in_output",
        "best_of",
        "chat_template",
        "chat_template_kwargs",
    }
)
# Request fields passed to the worker under the same name, when the client set them.
SAME_NAME = (
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "presence_penalty",
    "frequency_penalty",
)


def new_completion_id() -> str:
    """An id in OpenAI's style."""
    return "chatcmpl-" + secrets.token_hex(12)


def template_message(message: Message) -> dict[str, Any]:
    """A message as chat templates expect it: plain text content, OpenAI role names."""
    role = "system" if message.role == "developer" else message.role
    out: dict[str, Any] = {"role": role, "content": message.text()}
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [tc.model_dump() for tc in message.tool_calls]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def logit_bias(request: ChatRequest) -> list[list[float]]:
    """``logit_bias`` as llama.cpp's ``[[token_id, bias], ...]``; keys must be token ids."""
    out: list[list[float]] = []
    for key, value in (request.logit_bias or {}).items():
        if not str(key).isdigit():
            raise InvalidRequestError(
                f"logit_bias keys are token ids of the model; {key!r} is not one",
                param="logit_bias",
                code="invalid_value",
            )
        out.append([int(key), float(value)])
    return out


def _sampling(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in SAME_NAME:
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    stops = request.stops
    if stops:
        body["stop"] = list(stops)
    if request.logit_bias:
        body["logit_bias"] = logit_bias(request)
    return body


def chat_body(request: ChatRequest, contract: OutputContract | None) -> dict[str, Any]:
    """The body of ``POST /v1/chat/completions`` on the worker."""
    body = _sampling(request)
    body["messages"] = [template_message(m) for m in request.messages]
    limit = request.completion_limit
    if limit is not None:
        body["max_tokens"] = limit
    if (request.n or 1) > 1:
        body["n"] = request.n
    if request.logprobs:
        # The worker sends no log-probabilities at all for top_logprobs 0: ask for one
        # alternative and leave it out again (`trim_alternatives`).
        body["logprobs"] = True
        body["top_logprobs"] = max(1, request.top_logprobs or 0)
    if request.chat_template_kwargs:
        body["chat_template_kwargs"] = request.chat_template_kwargs
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if contract is not None:
        body.update(contract.engine_fields())
    return body


def completion_body(
    request: ChatRequest, prompt: str, contract: OutputContract | None
) -> dict[str, Any]:
    """The body of the native ``POST /completion`` for one choice of *request*."""
    body = _sampling(request)
    body["prompt"] = prompt
    body["n_predict"] = request.completion_limit or -1
    body["cache_prompt"] = True
    if request.logprobs:
        body["n_probs"] = max(1, request.top_logprobs or 0)
    if request.stream:
        body["stream"] = True
    if contract is not None:
        body.update(contract.engine_fields())
    return body


def trim_alternatives(logprobs: dict[str, Any] | None, top: int) -> None:
    """Keep *top* alternatives per token (the worker was asked for at least one)."""
    for entry in (logprobs or {}).get("content") or []:
        if isinstance(entry, dict) and isinstance(entry.get("top_logprobs"), list):
            entry["top_logprobs"] = entry["top_logprobs"][:top]


def role_only(choice: ChunkChoice) -> bool:
    """Whether a chunk choice says nothing but its role (the worker's first chunk)."""
    delta = choice.delta
    return (
        delta.role is not None
        and not delta.content
        and not delta.reasoning_content
        and not delta.tool_calls
        and choice.finish_reason is None
        and choice.logprobs is None
    )


def _misshapen(what: str) -> UpstreamError:
    # The worker is ours, yet a malformed answer is still its fault: a 502, not a crash.
    return UpstreamError(f"the engine sent {what} of the wrong shape", code="bad_upstream_response")


def _finish(data: dict[str, Any]) -> FinishReason:
    stop_type = data.get("stop_type")
    if stop_type is not None and not isinstance(stop_type, str):
        raise _misshapen("a stop type")
    return "length" if stop_type == "limit" else "stop"


def _stop_text(data: dict[str, Any], request: ChatRequest) -> str:
    """The stop string itself, when the client asked to keep it and one stopped us."""
    if request.include_stop_str_in_output and data.get("stop_type") == "word":
        word = data.get("stopping_word")
        return word if isinstance(word, str) else ""
    return ""


def _token(entry: Any) -> dict[str, Any]:
    """One token's log-probability, as OpenAI writes it."""
    if not isinstance(entry, dict):
        raise _misshapen("a log-probability entry")
    token, logprob = entry.get("token", ""), entry.get("logprob", 0.0)
    if not isinstance(token, str) or isinstance(logprob, bool):
        raise _misshapen("a log-probability entry")
    if not isinstance(logprob, int | float):
        raise _misshapen("a log-probability")
    return {"token": token, "logprob": float(logprob), "bytes": entry.get("bytes")}


def openai_logprobs(raw: Any, top: int) -> list[dict[str, Any]]:
    """llama.cpp's ``completion_probabilities`` as OpenAI ``logprobs.content`` entries."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _misshapen("log-probabilities")
    out: list[dict[str, Any]] = []
    for entry in raw:
        token = _token(entry)
        alternatives = entry.get("top_logprobs") or []
        if not isinstance(alternatives, list):
            raise _misshapen("alternatives")
        out.append({**token, "top_logprobs": [_token(a) for a in alternatives[:top]]})
    return out


def _usage(data: dict[str, Any]) -> Usage:
    prompt, completion = data.get("tokens_evaluated"), data.get("tokens_predicted")
    if type(prompt) is not int or type(completion) is not int:  # true is not a count
        raise UpstreamError("the engine's answer has no token counts", code="bad_upstream_response")
    return Usage(prompt, completion)


def parse_completion(data: Any, request: ChatRequest) -> ChatResponse:
    """A native ``/completion`` answer as a one-choice chat answer."""
    if not isinstance(data, dict) or not isinstance(data.get("content"), str):
        raise UpstreamError("the engine's answer is not a completion", code="bad_upstream_response")
    text = data["content"] + _stop_text(data, request)
    logprobs = None
    if request.logprobs:
        entries = openai_logprobs(data.get("completion_probabilities"), request.top_logprobs or 0)
        logprobs = {"content": entries, "refusal": None}
    choice = Choice(0, AssistantMessage(content=text), _finish(data), logprobs)
    return ChatResponse(
        new_completion_id(), int(time.time()), request.model, [choice], _usage(data)
    )


class CompletionStream:
    """Turns the native ``/completion`` stream's events into chat chunks."""

    def __init__(self, request: ChatRequest, index: int = 0) -> None:
        self.request = request
        self.index = index
        self.id = new_completion_id()
        self.created = int(time.time())
        self.finished = False
        self.usage: Usage | None = None
        self._started = False

    def _chunk(self, delta: Delta, finish: FinishReason | None = None, lp: Any = None) -> ChatChunk:
        choice = ChunkChoice(self.index, delta, finish, lp)
        return ChatChunk(self.id, self.created, self.request.model, [choice])

    def feed(self, data: Any) -> list[ChatChunk]:
        """The chunks one event of the worker's stream makes."""
        if not isinstance(data, dict) or not isinstance(data.get("content", ""), str):
            raise UpstreamError(
                "the engine sent a stream event that is not a completion",
                code="bad_upstream_response",
            )
        out: list[ChatChunk] = []
        if not self._started:
            self._started = True
            out.append(self._chunk(Delta(role="assistant", content="")))
        text = data.get("content") or ""
        lp = None
        if self.request.logprobs and data.get("completion_probabilities"):
            entries = openai_logprobs(
                data["completion_probabilities"], self.request.top_logprobs or 0
            )
            lp = {"content": entries, "refusal": None}
        if text or lp:
            out.append(self._chunk(Delta(content=text), lp=lp))
        if data.get("stop"):
            tail = _stop_text(data, self.request)
            if tail:
                out.append(self._chunk(Delta(content=tail)))
            out.append(self._chunk(Delta(), _finish(data)))
            self.usage = _usage(data)
            self.finished = True
        return out
