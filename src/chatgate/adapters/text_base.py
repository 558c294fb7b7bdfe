"""What every text-completion protocol shares: a chat becomes one prompt string
(`chatgate.adapters.text_prompt`), the common sampling parameters take the backend's
own names (`Samplers`), and the text that comes back becomes a chat answer.

A protocol module says where its requests go and how its answers and stream events
read; this module does the rest, so the rules are the same on every text backend:

- ``temperature``, ``top_p``, ``top_k``, ``min_p``, the repetition penalty (also spelt
  ``rep_pen`` or ``repeat_penalty``), ``presence_penalty``, ``frequency_penalty``,
  ``stop``, ``seed`` and ``max_tokens`` (or ``max_completion_tokens``) map to the
  backend's names; one it has no name for is refused, or dropped with
  ``drop_params``, like any other parameter it does not know;
- a backend's own fields (``native``) pass through as the client wrote them;
- stop strings are the template's and the client's together.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from chatgate.adapters.text_prompt import (
    COUNT_TOPIC,
    RENDER_TOPIC,
    TEMPLATE_TOPIC,
    ModelFacts,
    Prompter,
    TextPrompt,
    max_new_tokens,
)
from chatgate.adapters.wire import NativeAdapter, ReaderBase, decode, role_chunk
from chatgate.config import Connection
from chatgate.errors import InvalidRequestError
from chatgate.extensions import UPSTREAM_FIELDS
from chatgate.gbnf.schema import json_gbnf
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.sources import Source
from chatgate.types import (
    AssistantMessage,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    Delta,
    FinishReason,
    JSONObjectFormat,
    JSONSchemaFormat,
    Usage,
)
from chatgate.upstream import Credentials, Question, SSEEvent, UpstreamRequest

# What every text backend takes, whatever its names: the request's frame.
FRAME = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens",
        "max_completion_tokens", "chat_template", "chat_template_kwargs", "user",
    }
)  # fmt: skip
REPETITION_NAMES = ("repetition_penalty", "rep_pen", "repeat_penalty")
# The common parameters a client may send beyond OpenAI's fields, with their bounds.
EXTRA_NUMBERS = {"min_p": (0.0, 1.0), "repetition_penalty": (0.0, 10.0)}
FINISHES: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "word": "stop",
    "eos_token": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "limit": "length",
    "max_tokens": "length",
}


@dataclass(frozen=True, slots=True)
class Samplers:
    """A backend's own names for the parameters every text backend shares; None where
    it has no such parameter."""

    max_tokens: str
    temperature: str | None = "temperature"
    top_p: str | None = "top_p"
    top_k: str | None = "top_k"
    min_p: str | None = "min_p"
    repetition_penalty: str | None = "repetition_penalty"
    stop: str | None = "stop"
    seed: str | None = "seed"
    presence_penalty: str | None = None
    frequency_penalty: str | None = None

    def name_of(self, concept: str) -> str | None:
        """The backend's name for *concept* (one of this class's fields)."""
        value: str | None = getattr(self, concept, None)
        return value


@dataclass(frozen=True, slots=True)
class TextAnswer:
    """What a text backend answered, in its own terms made plain."""

    text: str
    finish: FinishReason | None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class TextAdapter(NativeAdapter):
    """A text-completion protocol: subclasses say where and how, this class the rest."""

    samplers: Samplers
    # The backend's own request fields that a client may send as they are.
    native: frozenset[str] = frozenset()
    # Whether ``response_format`` (a JSON schema, or JSON) has a native form here.
    json_output: bool = False
    # Whether the server puts its own BOS before a prompt string (llama.cpp does).
    adds_bos: bool = True
    id_prefix: ClassVar[str] = "cmpl-"

    def __init__(
        self,
        connection: Connection,
        source: Source,
        credentials: Credentials,
        placeholder: str = DEFAULT_PLACEHOLDER,
    ) -> None:
        super().__init__(connection, source, credentials, placeholder)
        self.prompter = Prompter(connection.text, connection.name, self.adds_bos)
        # Whether the protocol streams at all; a stream request to one that does not is
        # answered whole, as chunks.
        self.streams = True

    def headers(self, auth: dict[str, str] | None = None) -> dict[str, str]:
        """JSON, the credential (*auth*; by default the key as a Bearer token, when
        there is one), then the connection's own ``headers``, which may replace it."""
        out = {"Content-Type": "application/json"}
        if auth is None:
            auth = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        out.update(auth)
        out.update(self.connection.headers)
        return out

    def props_facts(self, data: Any) -> ModelFacts:
        """A llama.cpp-style ``/props`` answer (KoboldCpp serves the same shape): the
        chat template, BOS and EOS text, and ``default_generation_settings.n_ctx``."""
        read = self.read
        answer = read.of(data, dict, "/props")
        settings = read.field(answer, "default_generation_settings", dict) or {}
        return ModelFacts(
            chat_template=read.field(answer, "chat_template", str),
            bos_token=read.field(answer, "bos_token", str) or "",
            eos_token=read.field(answer, "eos_token", str) or "",
            context_size=read.count(settings, "n_ctx") or None,
        )

    # --- what a protocol module provides -----------------------------------------

    def facts_request(self, model: str) -> UpstreamRequest | None:
        """The request that asks the server about *model* (its chat template, BOS,
        context); None where the protocol cannot say."""
        return None

    def read_facts(self, data: Any) -> ModelFacts:
        """The answer to `facts_request`."""
        return ModelFacts()

    def count_request(self, model: str, text: str) -> UpstreamRequest | None:
        """The request that counts *text*'s tokens with the model's tokenizer; None
        where the server has no tokenizer endpoint."""
        return None

    def read_count(self, data: Any) -> int:
        """The answer to `count_request`: a token count."""
        return 0

    def tokenize_request(self, model: str, text: str) -> UpstreamRequest | None:
        """The request that gives *text*'s token ids; None where the server gives
        only a count, or nothing."""
        return None

    def detokenize_request(self, model: str, ids: list[int]) -> UpstreamRequest | None:
        """The request that turns token ids back into text; None where the server
        cannot."""
        return None

    def body(
        self, request: ChatRequest, prompt: TextPrompt, fields: dict[str, Any]
    ) -> UpstreamRequest:
        """The upstream request for *prompt* with the sampling *fields* (already in the
        backend's names)."""
        raise NotImplementedError

    def read_answer(self, data: Any) -> TextAnswer:
        """A whole answer."""
        raise NotImplementedError

    def read_piece(self, data: Any) -> TextAnswer | None:
        """One stream event's text and, on the last, its finish; None for an event that
        carries nothing."""
        raise NotImplementedError

    # --- the shared rules -----------------------------------------------------------

    def unsupported(self, request: ChatRequest, set_names: list[str]) -> list[str]:
        """Parameters with no counterpart on this backend, in the client's order."""
        out: list[str] = []
        for name in set_names:
            if name == "n" and (request.n or 1) == 1:
                continue
            if name in FRAME or name in UPSTREAM_FIELDS or name in self.native:
                continue
            if name == "response_format" and self.json_output:
                continue
            concept = "repetition_penalty" if name in REPETITION_NAMES else name
            if concept in Samplers.__dataclass_fields__ and self.samplers.name_of(concept):
                continue
            out.append(name)
        return out

    def sampling(
        self, request: ChatRequest, dropped: list[str], prompt: TextPrompt
    ) -> dict[str, Any]:
        """The sampling fields in this backend's names."""
        names = self.samplers
        extra = request.model_extra or {}
        values: dict[str, Any] = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "top_k": request.top_k,
            "seed": request.seed,
            "presence_penalty": request.presence_penalty,
            "frequency_penalty": request.frequency_penalty,
            "min_p": _number(extra, "min_p", "min_p"),
        }
        for alias in REPETITION_NAMES:
            if alias in extra:
                values["repetition_penalty"] = _number(extra, alias, "repetition_penalty")
                break
        fields: dict[str, Any] = {names.max_tokens: max_new_tokens(request)}
        for concept, value in values.items():
            name = names.name_of(concept)
            if value is not None and name and concept not in dropped:
                fields[name] = value
        if names.stop and prompt.stop:
            fields[names.stop] = prompt.stop
        for name in self.native:
            if name in extra and name not in dropped:
                fields[name] = extra[name]
        return fields

    def build(self, request: ChatRequest, dropped: list[str]) -> UpstreamRequest:
        """The upstream request: the fitted prompt and the backend's sampling fields."""
        prompt = self.prompter.prompt(request)
        upstream = self.body(request, prompt, self.sampling(request, dropped, prompt))
        upstream.explain = prompt.explain
        return upstream

    def lookup(self, request: ChatRequest) -> Question | None:
        """The model's facts, then a calibrating token count, then a Jinja rendering."""
        model, prompter = request.model_name, self.prompter
        if prompter.wants_facts(model):
            ask = self.facts_request(model)
            if ask is not None:
                return Question(TEMPLATE_TOPIC + model, ask)
            prompter.learn_facts(model, ModelFacts())
        text = prompter.wants_count(request)
        if text is not None:
            ask = self.count_request(model, text)
            if ask is not None:
                return Question(f"{COUNT_TOPIC}{len(text)}:{model}", ask)
            prompter.learn_count(model, len(text), None)
        return prompter.render_question(request)

    def learn(self, question: Question, answer: Any, error: str | None) -> None:
        """Keep what the server said, or why it could not."""
        topic, prompter = question.topic, self.prompter
        if topic.startswith(TEMPLATE_TOPIC):
            model = topic.removeprefix(TEMPLATE_TOPIC)
            if error is not None:
                facts = ModelFacts(note=f"the server could not tell: {error}")
            else:
                try:
                    facts = self.read_facts(answer)
                except (TypeError, KeyError, AttributeError, ValueError):
                    facts = ModelFacts(note="the server's answer about the model is unreadable")
            prompter.learn_facts(model, facts)
        elif topic.startswith(COUNT_TOPIC):
            size, _, model = topic.removeprefix(COUNT_TOPIC).partition(":")
            tokens = None
            if error is None:
                try:
                    tokens = self.read_count(answer)
                except (TypeError, KeyError, AttributeError, ValueError):
                    tokens = None
            prompter.learn_count(model, int(size), tokens)
        elif topic.startswith(RENDER_TOPIC):
            prompter.learn_render(topic, str(answer))

    def parse_response(self, data: Any, model: str) -> ChatResponse:
        """A whole answer as one choice."""
        answer = self.read_answer(data)
        usage = Usage(answer.prompt_tokens, answer.completion_tokens)
        choice = Choice(0, AssistantMessage(answer.text), answer.finish or "stop")
        return ChatResponse(_answer_id(self.id_prefix), int(time.time()), model, [choice], usage)

    def reader(self, request: ChatRequest) -> TextReader:
        """A reader for the stream *request* opens."""
        return TextReader(self, request.model)


class TextReader(ReaderBase):
    """Turns a text backend's stream into chat chunks: the role first, then the text
    as it comes, then the finish (with usage when the backend counted)."""

    def __init__(self, adapter: TextAdapter, model: str) -> None:
        super().__init__(adapter.connection, model, _answer_id(adapter.id_prefix))
        self.adapter = adapter
        self.started = False

    def feed(self, event: Any) -> list[ChatChunk]:
        """The chunks one event (SSE) or line (NDJSON, already parsed) makes."""
        if isinstance(event, SSEEvent):
            if event.data.strip() == "[DONE]":
                self.done = True
                return []
            event = decode(self.connection, event)
        piece = self.adapter.read_piece(event)
        out: list[ChatChunk] = []
        if not self.started:
            self.started = True
            out.append(role_chunk(self.id, self.model, self.created))
        if piece is None:
            return out
        if piece.text:
            out.append(self.chunk(Delta(content=piece.text)))
        if piece.finish is not None:
            usage = None
            if piece.prompt_tokens or piece.completion_tokens:
                usage = Usage(piece.prompt_tokens, piece.completion_tokens)
            out.append(self.chunk(Delta(), piece.finish, usage))
            self.finished = self.done = True
        return out


def json_grammar(request: ChatRequest) -> str | None:
    """``response_format`` (a JSON schema, or any JSON object) as a GBNF grammar, for
    servers that constrain output with one; None without a JSON format."""
    fmt = request.response_format
    if isinstance(fmt, JSONSchemaFormat):
        schema = fmt.json_schema.schema_ or {"type": "object"}
        return json_gbnf(schema, param="response_format.json_schema.schema")
    if isinstance(fmt, JSONObjectFormat):
        return json_gbnf(fmt.schema_, param="response_format.schema")
    return None


def finish_of(value: Any, default: FinishReason | None = "stop") -> FinishReason | None:
    """A backend's word for why it stopped, as OpenAI's."""
    if isinstance(value, str):
        return FINISHES.get(value, default)
    return default


def _number(extra: dict[str, Any], key: str, param: str) -> float | None:
    value = extra.get(key)
    if value is None:
        return None
    low, high = EXTRA_NUMBERS[param]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequestError(f"'{key}' must be a number", param=key, code="invalid_type")
    if not low <= value <= high:
        raise InvalidRequestError(
            f"'{key}' must be between {low:g} and {high:g}", param=key, code="invalid_value"
        )
    return float(value)


def _answer_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]
