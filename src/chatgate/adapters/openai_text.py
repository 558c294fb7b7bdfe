"""OpenAI-style text completion (``/v1/completions``) servers, one flavour per source.

Every flavour sends the prompt chatgate renders (`chatgate.adapters.text_prompt`) as
``prompt``, with ``max_tokens``, ``stop`` and the samplers, and reads
``choices[0].text``, ``finish_reason`` and ``usage``; a stream is ``data:`` chunks of
that shape, a usage chunk when asked, then ``[DONE]``. What sets the servers apart is
a table (`FLAVOURS`): the path prefix, the auth header, the server's own sampler and
constrained-decoding fields a client may send, ``response_format``'s native form, the
tokenizer endpoint, the abort endpoint, and whether the server refuses fields it does
not know.

- ``textgen`` (text-generation-webui): its samplers, ``grammar_string`` (a JSON
  ``response_format`` is sent there as a GBNF grammar);
  ``/v1/internal/encode`` counts tokens; a client that leaves makes chatgate call
  ``/v1/internal/stop-generation`` (closing the stream does not stop it; the call
  stops whatever that server is generating).
- ``tabby`` (TabbyAPI): ``x-api-key`` and Bearer; ``json_schema``, ``regex_pattern``,
  ``grammar_string``; ``response_format`` becomes ``json_schema``; ``/v1/token/encode``;
  ``/v1/model`` tells the context (``max_seq_len``).
- ``vllm``: ``response_format`` becomes ``structured_outputs.json`` (or ``guided_json``
  with ``vllm_guided = "legacy"``); the ``guided_*`` fields arrive as vLLM's form
  already (`chatgate.adapters.guided`); ``/tokenize``; ``/v1/models`` tells
  ``max_model_len``.
- ``aphrodite``: vLLM's extras and text-generation-webui's samplers; the legacy
  ``guided_*`` fields, so ``response_format`` becomes ``guided_json``; ``/v1/tokenize``.
- ``mancer`` (``X-API-KEY``) and ``dreamgen`` (Bearer): hosted; Mancer takes
  text-generation-webui's samplers, DreamGen ``min_p``, ``top_k`` and
  ``repetition_penalty``.
- ``generic``: any ``/v1/completions``; OpenAI's completion fields only (with the
  connection's ``grammar_field``, a JSON ``response_format`` goes there as a GBNF
  grammar: ``grammar`` for llama-cpp-python's server), and at most 4
  stop strings: the template's end of turn, then the client's, then the template's
  others (the preview says which were left out).

Every flavour's server puts its own BOS before a string prompt (text-generation-webui's
and TabbyAPI's ``add_bos_token``, vLLM's and Aphrodite's ``add_special_tokens`` default
to true; the hosted ones and a generic server are assumed to), so the prompt never
starts with one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chatgate.adapters.openai_text_flavours import FLAVOURS, FULL
from chatgate.adapters.text_base import (
    Samplers,
    TextAdapter,
    TextAnswer,
    TextReader,
    finish_of,
    json_grammar,
)
from chatgate.adapters.text_prompt import ModelFacts, TextPrompt
from chatgate.adapters.wire import decode, lie, stream_error
from chatgate.config import Connection
from chatgate.extensions import GUIDED_FIELDS
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.sources import Source
from chatgate.types import (
    ChatChunk,
    ChatRequest,
    JSONObjectFormat,
    JSONSchemaFormat,
    Usage,
)
from chatgate.upstream import Credentials, SSEEvent, UpstreamRequest


class OpenAITextAdapter(TextAdapter):
    """``/v1/completions`` of one flavour (`FLAVOURS`, by the source's id)."""

    samplers: Samplers = FULL
    id_prefix = "cmpl-"

    def __init__(
        self,
        connection: Connection,
        source: Source,
        credentials: Credentials,
        placeholder: str = DEFAULT_PLACEHOLDER,
    ) -> None:
        flavour = FLAVOURS.get(source.id, FLAVOURS["generic"])
        if connection.text.grammar_field and flavour.json_form is None:
            # The connection knows where its server takes a grammar (llama-cpp-python).
            field = connection.text.grammar_field
            flavour = replace(flavour, json_form="grammar", grammar_field=field)
        self.flavour = flavour
        # One class serves every flavour: each instance holds its flavour's tables
        # (before the prompter is made).
        self.samplers = flavour.samplers
        self.json_output = flavour.json_form is not None
        self.adds_bos = flavour.adds_bos
        natives = flavour.natives | flavour.constraints
        self.legacy = flavour.guided and connection.vllm_guided == "legacy"
        if self.legacy:
            natives = (natives - {"structured_outputs"}) | frozenset(GUIDED_FIELDS)
        self.native = natives
        super().__init__(connection, source, credentials, placeholder)
        base = self.base_url
        prefix = flavour.prefix
        # A base URL given with the prefix already (".../v1") is the same server.
        self.root = base[: -len(prefix)] if prefix and base.endswith(prefix) else base
        self.api = self.root + prefix

    def _headers(self) -> dict[str, str]:
        auth: dict[str, str] = {}
        if self.key:
            if self.flavour.auth in ("x-api-key", "both"):
                auth["X-API-KEY"] = self.key
            if self.flavour.auth in ("bearer", "both"):
                auth["Authorization"] = f"Bearer {self.key}"
        return self.headers(auth)

    def _post(self, url: str, body: dict[str, Any], stream: bool = False) -> UpstreamRequest:
        return UpstreamRequest("POST", url, self._headers(), body, stream=stream)

    # --- requests ------------------------------------------------------------------

    def sampling(
        self, request: ChatRequest, dropped: list[str], prompt: TextPrompt
    ) -> dict[str, Any]:
        """The shared samplers, then the natives that are request fields of chatgate's
        own (``include_stop_str_in_output``, the legacy ``guided_*``)."""
        fields = super().sampling(request, dropped, prompt)
        for name in self.native:
            if name in type(request).model_fields and name not in dropped:
                value = getattr(request, name)
                if value is not None:
                    fields[name] = value
        return fields

    def body(
        self, request: ChatRequest, prompt: TextPrompt, fields: dict[str, Any]
    ) -> UpstreamRequest:
        """``{prefix}/completions`` with the prompt, the samplers and the constraint."""
        payload: dict[str, Any] = {"model": request.model_name, "prompt": prompt.text, **fields}
        limit = self.flavour.max_stops
        stops = payload.get("stop")
        if limit is not None and isinstance(stops, list) and len(stops) > limit:
            kept, left = _ranked_stops(stops, request.stops, limit)
            payload["stop"] = kept
            prompt.explain["stop"] = kept
            prompt.explain["stop_left_out"] = left
            prompt.explain["stop_note"] = (
                f"this server takes at most {limit} stop strings: the template's end of "
                "turn and the client's are kept first"
            )
        payload.update(self._json(request))
        if request.stream:
            payload["stream"] = True
            asked = request.stream_options is not None and request.stream_options.include_usage
            if asked or not self.flavour.refuses_unknown:
                payload["stream_options"] = {"include_usage": True}
        return self._post(self.api + "/completions", payload, bool(request.stream))

    def _json(self, request: ChatRequest) -> dict[str, Any]:
        """``response_format`` in the flavour's native form."""
        fmt = request.response_format
        if isinstance(fmt, JSONSchemaFormat):
            schema: dict[str, Any] | None = fmt.json_schema.schema_ or {"type": "object"}
        elif isinstance(fmt, JSONObjectFormat):
            schema = fmt.schema_
        else:
            return {}
        form = self.flavour.json_form
        if form == "grammar" and self.flavour.grammar_field:
            return {self.flavour.grammar_field: json_grammar(request)}
        if form == "json_schema":
            return {"json_schema": schema or {"type": "object"}}
        if form == "guided_json" or (form == "vllm" and self.legacy):
            return {"guided_json": schema or {"type": "object"}}
        if form == "vllm":
            return {"structured_outputs": {"json": schema} if schema else {"json_object": True}}
        return {}

    def cancel_request(self, request: ChatRequest) -> UpstreamRequest | None:
        """text-generation-webui's stop-generation: closing its stream does not stop it."""
        if self.flavour.abort is None:
            return None
        return self._post(self.root + self.flavour.abort, {})

    # --- answers -------------------------------------------------------------------

    def _choice(self, data: Any, what: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(the first choice, or None; the answer)."""
        read = self.read
        answer = read.of(data, dict, what)
        if "error" in answer:
            raise stream_error(self.connection, answer["error"])
        choices = read.items(answer, "choices", dict)
        return (choices[0] if choices else None), answer

    def _usage(self, answer: dict[str, Any]) -> tuple[int, int]:
        usage = self.read.field(answer, "usage", dict) or {}
        return self.read.count(usage, "prompt_tokens"), self.read.count(usage, "completion_tokens")

    def read_answer(self, data: Any) -> TextAnswer:
        """``{"choices": [{"text", "finish_reason"}], "usage"}``."""
        choice, answer = self._choice(data, "the answer")
        if choice is None:
            raise lie(self.connection, "the answer has no choices")
        return TextAnswer(
            self.read.need(choice, "text", str),
            finish_of(self.read.field(choice, "finish_reason", str)),
            *self._usage(answer),
        )

    def read_piece(self, data: Any) -> TextAnswer | None:
        """One chunk: ``choices[0].text``; its ``finish_reason`` on the last."""
        choice, answer = self._choice(data, "a stream event")
        if choice is None:
            return None
        finish = self.read.field(choice, "finish_reason", str)
        return TextAnswer(
            self.read.field(choice, "text", str) or "",
            finish_of(finish) if finish else None,
            *self._usage(answer),
        )

    def reader(self, request: ChatRequest) -> TextReader:
        """A reader that waits past the finish for the usage chunk and ``[DONE]``."""
        return CompletionReader(self, request.model)

    # --- what the server knows -----------------------------------------------------

    def facts_request(self, model: str) -> UpstreamRequest | None:
        """The models list (vLLM, Aphrodite) or ``/v1/model`` (TabbyAPI): the context."""
        where = self.flavour.context_from
        if where is None:
            return None
        url = self.api + "/models" if where == "models" else self.root + "/v1/model"
        return UpstreamRequest("GET", url, self._headers())

    def read_facts(self, data: Any) -> ModelFacts:
        """``max_model_len`` of the model's entry, or ``parameters.max_seq_len``."""
        read = self.read
        answer = read.of(data, dict, "the model's facts")
        if self.flavour.context_from == "tabby":
            parameters = read.field(answer, "parameters", dict) or {}
            return ModelFacts(context_size=read.count(parameters, "max_seq_len") or None)
        for entry in read.items(answer, "data", dict):
            if "max_model_len" in entry:
                return ModelFacts(context_size=read.count(entry, "max_model_len") or None)
        return ModelFacts()

    def count_request(self, model: str, text: str) -> UpstreamRequest | None:
        """The flavour's tokenizer endpoint, if it has one."""
        path = self.flavour.tokenizer
        if path is None:
            return None
        body: dict[str, Any] = {"text": text}
        if self.flavour.tokenize_key == "prompt":
            body = {"model": model, "prompt": text}
        return self._post(self.root + path, body)

    def read_count(self, data: Any) -> int:
        """``count`` (vLLM), ``length`` (text-generation-webui, TabbyAPI) or the tokens."""
        read = self.read
        answer = read.of(data, dict, "the token count")
        for key in ("count", "length"):
            if answer.get(key) is not None:
                return read.count(answer, key)
        return len(read.items(answer, "tokens", int))

    def models_request(self, base_url: str | None = None) -> UpstreamRequest:
        """``{prefix}/models``."""
        api = self.api if base_url is None else base_url.rstrip("/") + self.flavour.prefix
        return UpstreamRequest("GET", api + "/models", self._headers())

    def parse_models(self, data: Any) -> list[str]:
        """The ids of the models list."""
        return self.listed(data, "data", "id")


class CompletionReader(TextReader):
    """An OpenAI-style completion stream: the finish chunk may be followed by a usage
    chunk (``choices: []``), then ``[DONE]``; an ``{"error"}`` event raises."""

    def feed(self, event: Any) -> list[ChatChunk]:
        """The chunks of one event."""
        if isinstance(event, SSEEvent):
            if event.data.strip() == "[DONE]":
                self.done = True
                return []
            event = decode(self.connection, event)
        if self.finished:
            data = self.read.of(event, dict, "a stream event")
            usage = self.read.field(data, "usage", dict)
            if usage is None:
                return []
            counted = Usage(
                self.read.count(usage, "prompt_tokens"),
                self.read.count(usage, "completion_tokens"),
            )
            self.done = True
            return [ChatChunk(self.id, self.created, self.model, [], counted)]
        out = super().feed(event)
        if self.finished and out and out[-1].usage is None:
            self.done = False  # the usage chunk may follow
        return out


def _ranked_stops(stops: list[str], client: list[str], limit: int) -> tuple[list[str], list[str]]:
    """(the *limit* stop strings kept, those left out): the template's first (its end
    of turn), then the client's, then the template's others."""
    template = [s for s in stops if s not in client]
    ranked = [*template[:1], *[s for s in stops if s in client], *template[1:]]
    return ranked[:limit], ranked[limit:]
