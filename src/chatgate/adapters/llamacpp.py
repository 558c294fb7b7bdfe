"""llama.cpp's server (llama-server), through its native ``/completion``.

The answer is ``{"content", "stop", "stop_type", "tokens_evaluated",
"tokens_predicted"}``; a stream sends such objects as server-sent events, the last with
``"stop": true``. The server adds its own BOS to a string prompt, so the prompt never
starts with one. ``response_format`` becomes ``json_schema`` (or, for plain JSON, the
schema of any object), which the server turns into a grammar; ``/props`` tells the
model's chat template, BOS and EOS text and context, and ``/tokenize`` counts tokens.
"""

from __future__ import annotations

from typing import Any

from chatgate.adapters.text_base import Samplers, TextAdapter, TextAnswer, finish_of
from chatgate.adapters.text_prompt import ModelFacts, TextPrompt
from chatgate.types import ChatRequest, JSONSchemaFormat
from chatgate.upstream import UpstreamRequest

ANY_OBJECT: dict[str, Any] = {"type": "object"}


class LlamaCppAdapter(TextAdapter):
    """llama-server's ``/completion``."""

    samplers: Samplers = Samplers(
        max_tokens="n_predict",
        repetition_penalty="repeat_penalty",
        presence_penalty="presence_penalty",
        frequency_penalty="frequency_penalty",
    )
    native: frozenset[str] = frozenset(
        {
            "typical_p", "dynatemp_range", "dynatemp_exponent", "repeat_last_n",
            "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
            "dry_sequence_breakers", "xtc_probability", "xtc_threshold", "mirostat",
            "mirostat_tau", "mirostat_eta", "grammar", "json_schema", "ignore_eos",
            "n_probs", "min_keep", "n_keep", "cache_prompt", "samplers", "id_slot",
            "t_max_predict_ms", "top_n_sigma",
        }
    )  # fmt: skip
    json_output: bool = True
    id_prefix = "llamacpp-"

    def body(
        self, request: ChatRequest, prompt: TextPrompt, fields: dict[str, Any]
    ) -> UpstreamRequest:
        """``/completion`` with the prompt, the samplers and any JSON constraint."""
        payload: dict[str, Any] = {"prompt": prompt.text, "cache_prompt": True, **fields}
        fmt = request.response_format
        if isinstance(fmt, JSONSchemaFormat):
            payload["json_schema"] = fmt.json_schema.schema_ or ANY_OBJECT
        elif fmt is not None and fmt.type == "json_object":
            payload["json_schema"] = ANY_OBJECT
        if request.stream:
            payload["stream"] = True
        return UpstreamRequest(
            "POST", self.base_url + "/completion", self.headers(), payload, stream=request.stream
        )

    def read_answer(self, data: Any) -> TextAnswer:
        """``{"content", "stop_type", "tokens_evaluated", "tokens_predicted"}``."""
        read = self.read
        answer = read.of(data, dict, "the answer")
        return TextAnswer(
            read.need(answer, "content", str),
            finish_of(answer.get("stop_type")),
            read.count(answer, "tokens_evaluated"),
            read.count(answer, "tokens_predicted"),
        )

    def read_piece(self, data: Any) -> TextAnswer | None:
        """One event: its ``content``; the last has ``"stop": true``."""
        read = self.read
        event = read.of(data, dict, "a stream event")
        text = read.field(event, "content", str) or ""
        if read.field(event, "stop", bool):
            return TextAnswer(
                text,
                finish_of(event.get("stop_type")),
                read.count(event, "tokens_evaluated"),
                read.count(event, "tokens_predicted"),
            )
        return TextAnswer(text, None)

    def facts_request(self, model: str) -> UpstreamRequest | None:
        """``/props``."""
        return UpstreamRequest("GET", self.base_url + "/props", self.headers())

    def read_facts(self, data: Any) -> ModelFacts:
        """The template, BOS, EOS and ``n_ctx`` of ``/props``."""
        return self.props_facts(data)

    def count_request(self, model: str, text: str) -> UpstreamRequest | None:
        """``/tokenize``."""
        body = {"content": text, "add_special": True, "parse_special": True}
        return UpstreamRequest("POST", self.base_url + "/tokenize", self.headers(), body)

    def read_count(self, data: Any) -> int:
        """``{"tokens": [...]}``."""
        return len(self.read.items(self.read.of(data, dict, "/tokenize"), "tokens", int))

    def tokenize_request(self, model: str, text: str) -> UpstreamRequest | None:
        """``/tokenize`` without the BOS: the ids of *text* itself."""
        body = {"content": text, "add_special": False, "parse_special": True}
        return UpstreamRequest("POST", self.base_url + "/tokenize", self.headers(), body)

    def detokenize_request(self, model: str, ids: list[int]) -> UpstreamRequest | None:
        """``/detokenize``."""
        body = {"tokens": ids}
        return UpstreamRequest("POST", self.base_url + "/detokenize", self.headers(), body)

    def models_request(self, base_url: str | None = None) -> UpstreamRequest:
        """``/v1/models``."""
        return UpstreamRequest("GET", (base_url or self.base_url) + "/v1/models", self.headers())

    def parse_models(self, data: Any) -> list[str]:
        """The ids of ``/v1/models``."""
        return self.listed(data, "data", "id")
