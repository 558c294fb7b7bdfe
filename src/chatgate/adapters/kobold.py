"""KoboldCpp's and KoboldAI Classic's native API (the KoboldAI United API).

``POST /api/v1/generate`` answers ``{"results": [{"text", "finish_reason"}]}``;
KoboldCpp streams from ``POST /api/extra/generate/stream``: events named ``message``
whose data is ``{"token", "finish_reason"}``, with no ``[DONE]``. Closing that stream
does not stop KoboldCpp, so a client that leaves makes chatgate call
``/api/extra/abort`` with the request's ``genkey``. KoboldCpp's ``/props`` tells the
model's chat template and context (else ``/api/extra/true_max_context_length`` does);
``/api/extra/tokencount`` counts tokens. KoboldAI Classic has none of the
``/api/extra`` routes: it does not stream (a stream request is answered whole, as
chunks), and its context is read from ``/api/v1/config/max_context_length``. A JSON
``response_format`` becomes a GBNF ``grammar`` (`chatgate.gbnf`), which both take.
"""

from __future__ import annotations

import os
from typing import Any

from chatgate.adapters.text_base import Samplers, TextAdapter, TextAnswer, finish_of, json_grammar
from chatgate.adapters.text_prompt import ModelFacts, TextPrompt, max_new_tokens
from chatgate.adapters.wire import lie
from chatgate.config import Connection
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.sources import Source
from chatgate.types import ChatRequest
from chatgate.upstream import Credentials, Question, UpstreamRequest

CONTEXT_TOPIC = "context:"
# Mixed into every genkey: two gateways in front of one KoboldCpp must not abort each
# other's generations.
_SALT = os.urandom(4).hex()


class KoboldAdapter(TextAdapter):
    """KoboldCpp, or KoboldAI Classic (``classic`` quirk)."""

    samplers: Samplers = Samplers(
        max_tokens="max_length",
        repetition_penalty="rep_pen",
        stop="stop_sequence",
        seed="sampler_seed",
    )
    native: frozenset[str] = frozenset(
        {
            "rep_pen_range", "rep_pen_slope", "typical", "tfs", "top_a", "sampler_order",
            "dynatemp_range", "dynatemp_exponent", "smoothing_factor", "mirostat",
            "mirostat_tau", "mirostat_eta", "dry_multiplier", "dry_base",
            "dry_allowed_length", "dry_sequence_breakers", "xtc_threshold",
            "xtc_probability", "nsigma", "banned_tokens", "use_default_badwordsids",
            "grammar", "grammar_retain_state", "memory", "trim_stop",
        }
    )  # fmt: skip
    # A JSON response_format is sent as a grammar (GBNF), which the generate API takes.
    json_output: bool = True
    id_prefix = "kobold-"

    def __init__(
        self,
        connection: Connection,
        source: Source,
        credentials: Credentials,
        placeholder: str = DEFAULT_PLACEHOLDER,
    ) -> None:
        super().__init__(connection, source, credentials, placeholder)
        self.classic = "classic" in source.quirks
        self.streams = not self.classic
        self._context_asked: set[str] = set()

    def genkey(self, request: ChatRequest) -> str:
        """The key naming *request*'s generation, for an abort."""
        return f"KCPP{_SALT}{id(request) & 0xFFFFFFFF:08x}"

    def body(
        self, request: ChatRequest, prompt: TextPrompt, fields: dict[str, Any]
    ) -> UpstreamRequest:
        """``/api/v1/generate`` (or the stream route) with the prompt and samplers."""
        context = prompt.explain["context_size"]
        payload: dict[str, Any] = {
            "prompt": prompt.text,
            "max_context_length": context,
            "trim_stop": True,
            **fields,
        }
        payload.setdefault("max_length", max_new_tokens(request))
        grammar = json_grammar(request)
        if grammar is not None:
            payload["grammar"] = grammar
        streamed = request.stream and not self.classic
        if not self.classic:
            payload["genkey"] = self.genkey(request)
        path = "/api/extra/generate/stream" if streamed else "/api/v1/generate"
        return UpstreamRequest(
            "POST", self.base_url + path, self.headers(), payload, stream=streamed
        )

    def read_answer(self, data: Any) -> TextAnswer:
        """``{"results": [{"text", "finish_reason"}]}``."""
        read = self.read
        results = read.items(read.of(data, dict, "the answer"), "results", dict)
        if not results:
            raise lie(self.connection, "the answer has no results")
        first = results[0]
        return TextAnswer(
            read.field(first, "text", str) or "",
            finish_of(first.get("finish_reason")),
            read.count(first, "prompt_tokens"),
            read.count(first, "completion_tokens"),
        )

    def read_piece(self, data: Any) -> TextAnswer | None:
        """``{"token", "finish_reason"}``: the finish is set on the last event only."""
        read = self.read
        event = read.of(data, dict, "a stream event")
        finish = event.get("finish_reason")
        return TextAnswer(
            read.field(event, "token", str) or "",
            finish_of(finish, None) if finish else None,
        )

    def cancel_request(self, request: ChatRequest) -> UpstreamRequest | None:
        """``/api/extra/abort`` for this request's genkey: closing the stream alone
        leaves KoboldCpp generating."""
        if self.classic:
            return None
        body = {"genkey": self.genkey(request)}
        return UpstreamRequest("POST", self.base_url + "/api/extra/abort", self.headers(), body)

    def facts_request(self, model: str) -> UpstreamRequest | None:
        """KoboldCpp's ``/props`` (template, context); Classic's context setting."""
        path = "/api/v1/config/max_context_length" if self.classic else "/props"
        return UpstreamRequest("GET", self.base_url + path, self.headers())

    def read_facts(self, data: Any) -> ModelFacts:
        """``/props``: ``chat_template`` and ``default_generation_settings.n_ctx``;
        Classic: ``{"value": n}``."""
        if self.classic:
            answer = self.read.of(data, dict, "the model's context")
            return ModelFacts(context_size=self.read.count(answer, "value") or None)
        return self.props_facts(data)

    def lookup(self, request: ChatRequest) -> Question | None:
        """The base's questions; then, where ``/props`` told no context, KoboldCpp's
        ``/api/extra/true_max_context_length`` (the context it was started with)."""
        question = super().lookup(request)
        if question is not None or self.classic:
            return question
        model = request.model_name
        facts = self.prompter.facts.get(model)
        if facts is None or facts.context_size is not None or model in self._context_asked:
            return None
        self._context_asked.add(model)
        ask = UpstreamRequest(
            "GET", self.base_url + "/api/extra/true_max_context_length", self.headers()
        )
        return Question(CONTEXT_TOPIC + model, ask)

    def learn(self, question: Question, answer: Any, error: str | None) -> None:
        """The base's answers, and the context KoboldCpp told (``{"value": n}``)."""
        if not question.topic.startswith(CONTEXT_TOPIC):
            super().learn(question, answer, error)
            return
        facts = self.prompter.facts.get(question.topic.removeprefix(CONTEXT_TOPIC))
        if facts is not None and error is None and isinstance(answer, dict):
            value = answer.get("value")
            if type(value) is int and value > 0:
                facts.context_size = value

    def count_request(self, model: str, text: str) -> UpstreamRequest | None:
        """``/api/extra/tokencount`` (KoboldCpp only)."""
        if self.classic:
            return None
        body = {"prompt": text, "special": True}
        return UpstreamRequest(
            "POST", self.base_url + "/api/extra/tokencount", self.headers(), body
        )

    def read_count(self, data: Any) -> int:
        """``{"value": n}``."""
        return self.read.count(self.read.of(data, dict, "the token count"), "value")

    def tokenize_request(self, model: str, text: str) -> UpstreamRequest | None:
        """``/api/extra/tokencount``, whose answer also lists the ids (KoboldCpp only)."""
        return self.count_request(model, text)

    def detokenize_request(self, model: str, ids: list[int]) -> UpstreamRequest | None:
        """``/api/extra/detokenize`` (KoboldCpp only)."""
        if self.classic:
            return None
        body = {"ids": ids}
        return UpstreamRequest(
            "POST", self.base_url + "/api/extra/detokenize", self.headers(), body
        )

    def models_request(self, base_url: str | None = None) -> UpstreamRequest:
        """``/api/v1/model``: the one model loaded."""
        return UpstreamRequest("GET", (base_url or self.base_url) + "/api/v1/model", self.headers())

    def parse_models(self, data: Any) -> list[str]:
        """``{"result": "koboldcpp/<name>"}`` → the name."""
        result = self.read.field(self.read.of(data, dict, "the models answer"), "result", str)
        if not result:
            return []
        return [result.split("/", 1)[1] if result.startswith("koboldcpp/") else result]
