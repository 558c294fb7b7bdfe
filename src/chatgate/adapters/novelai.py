"""NovelAI's text API: ``POST /ai/generate`` (``{"output"}``) and ``/ai/generate-stream``.

Kayra and Erato live at ``https://text.novelai.net``, Clio at ``https://api.novelai.net``
(the model id picks; a configured ``base_url`` serves them all). The body is
``{"input", "model", "parameters": {"use_string": true, "max_length", "min_length", ...}}``
with the samplers under NovelAI's names. A stream is server-sent events named
``newToken`` whose data is ``{"token", "ptr", "final"}``, the last one ``"final": true``,
with no end marker. The token is a persistent API token, sent as ``Bearer``;
``GET /user/subscription`` (at the API host) tells the account's tier and its context
(``perks.contextTokens``), which the prompt is fitted to.

Stop strings: NovelAI takes ``stop_sequences`` only as token ids of the model's own
tokenizer (NerdStash for Clio and Kayra, Llama 3's for Erato), which chatgate does not
have, so strings are never sent. The template's stop strings and the client's ``stop``
are applied by chatgate instead: the answer is cut at the first of them, and a stream
ends there (its upstream connection closed) without showing the stop. A client that
knows the token ids may send ``stop_sequences`` itself, as a NovelAI field. The cut is
made with the stop strings of the answer's own request (`NovelAIAdapter.settle`).

``max_length`` is at most 150 tokens, 250 on the top tier (Opus, tier 3) once the
subscription said so; more is asked for as that limit, and the explain says so. Erato's
prompts start with ``<|startoftext|><|reserved_special_token81|>``, its start and
the marker SillyTavern sends before a story. NovelAI counts no tokens for the client: the
usage of a whole answer is chatgate's estimate (characters ÷ 3, rounded up).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from chatgate.adapters.horde import cut_at_stop
from chatgate.adapters.text_base import Samplers, TextAdapter, TextAnswer, TextReader
from chatgate.adapters.text_prompt import ModelFacts, TextPrompt, max_new_tokens
from chatgate.adapters.wire import stream_error
from chatgate.prompt.fitting import estimate_tokens
from chatgate.types import ChatChunk, ChatRequest, ChatResponse, Delta, Usage
from chatgate.upstream import UpstreamRequest

TEXT_HOST = "https://text.novelai.net"
API_HOST = "https://api.novelai.net"
MODELS = ("clio-v1", "kayra-v1", "llama-3-erato-v1")
MAX_LENGTH, MAX_LENGTH_TOP = 150, 250  # tokens an answer may take; the top tier's
TOP_TIER = 3
# What Erato's prompts start with: its start token and the marker of a story's start.
ERATO_PREFIX = "<|startoftext|><|reserved_special_token81|>"
KEPT = 256  # requests whose stop strings are kept until their answer is read


@dataclass(frozen=True, slots=True)
class Cut:
    """What reading one request's answer needs: where to cut it and how to count it."""

    stops: tuple[str, ...]
    prompt_tokens: int
    max_length: int


class StopCutter:
    """Cuts a stream at the first stop string: text that may be the start of one is held
    back until the next piece shows whether it is."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(stop for stop in stops if stop)
        self.held = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """The text that can be shown now, and whether a stop string was reached."""
        text = self.held + piece
        cut, stopped = cut_at_stop(text, self.stops)
        if stopped:
            self.held = ""
            return cut, True
        keep = self._open_prefix(text)
        self.held = text[len(text) - keep :]
        return text[: len(text) - keep], False

    def flush(self) -> str:
        """What was held back, at the end of the stream."""
        held, self.held = self.held, ""
        return held

    def _open_prefix(self, text: str) -> int:
        """The length of the longest end of *text* that begins a stop string."""
        longest = max((len(stop) for stop in self.stops), default=1) - 1
        for size in range(min(longest, len(text)), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self.stops):
                return size
        return 0


class NovelAIAdapter(TextAdapter):
    """NovelAI's ``/ai/generate`` and ``/ai/generate-stream``."""

    samplers: Samplers = Samplers(max_tokens="max_length", stop=None, seed=None)
    native: frozenset[str] = frozenset(
        {
            "min_length", "tail_free_sampling", "typical_p", "top_a",
            "repetition_penalty_range", "repetition_penalty_slope",
            "repetition_penalty_frequency", "repetition_penalty_presence",
            "repetition_penalty_whitelist", "repetition_penalty_default_whitelist",
            "phrase_rep_pen", "mirostat_lr", "mirostat_tau", "stop_sequences",
            "bad_words_ids", "logit_bias_exp", "generate_until_sentence", "use_cache",
            "return_full_text", "prefix", "order", "num_logprobs", "math1_temp",
            "math1_quad", "math1_quad_entropy_scale",
        }
    )  # fmt: skip
    id_prefix = "novelai-"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tier: int | None = None  # the subscription's, once it was asked
        # What `build` worked out for a request, until its answer or stream is read.
        self._by_request: OrderedDict[int, Cut] = OrderedDict()

    def _headers(self) -> dict[str, str]:
        return self.headers({"Authorization": f"Bearer {self.key}"})

    def _host(self, model: str) -> str:
        if self.connection.base_url:
            return self.base_url
        return API_HOST if model.startswith("clio") else TEXT_HOST

    def _api(self, base_url: str | None = None) -> str:
        return base_url or (self.base_url if self.connection.base_url else API_HOST)

    def unsupported(self, request: ChatRequest, set_names: list[str]) -> list[str]:
        """The base's rule; ``stop`` is met by chatgate (the module's docstring)."""
        return [n for n in super().unsupported(request, set_names) if n != "stop"]

    # --- the request -------------------------------------------------------------------

    def _limit(self) -> int:
        return MAX_LENGTH_TOP if self.tier is not None and self.tier >= TOP_TIER else MAX_LENGTH

    def build(self, request: ChatRequest, dropped: list[str]) -> UpstreamRequest:
        """``/ai/generate`` (or the stream route), ``max_length`` within the tier's limit;
        the request's stop strings are kept for its answer."""
        asked = max_new_tokens(request)
        limit = self._limit()
        length = min(asked, limit)
        sent = request
        if length != asked:
            sent = request.without("max_completion_tokens", max_tokens=length)
        upstream = super().build(sent, dropped)
        explain = upstream.explain if upstream.explain is not None else {}
        body = upstream.body or {}
        explain["text"] = body.get("input", explain.get("text"))
        if asked > limit and (request.max_tokens or request.max_completion_tokens):
            tier = "the top tier's" if limit == MAX_LENGTH_TOP else "NovelAI's"
            explain["max_length"] = (
                f"{asked} tokens asked; {tier} limit is {limit} "
                f"({MAX_LENGTH_TOP} on Opus, tier {TOP_TIER}), so {limit} are asked for"
            )
        explain["stop_cut_by_chatgate"] = True
        cut = Cut(
            tuple(explain.get("stop") or ()), int(explain.get("estimated_tokens") or 0), length
        )
        self._by_request[id(request)] = cut
        while len(self._by_request) > KEPT:
            self._by_request.popitem(last=False)
        return upstream

    def body(
        self, request: ChatRequest, prompt: TextPrompt, fields: dict[str, Any]
    ) -> UpstreamRequest:
        """The prompt (Erato's with its prefix) and the parameters."""
        model = request.model_name
        text = ERATO_PREFIX + prompt.text if model.startswith("llama-3-erato") else prompt.text
        parameters: dict[str, Any] = {"use_string": True, "min_length": 1, **fields}
        payload = {"input": text, "model": model, "parameters": parameters}
        path = "/ai/generate-stream" if request.stream else "/ai/generate"
        return UpstreamRequest(
            "POST", self._host(model) + path, self._headers(), payload, stream=request.stream
        )

    # --- the answer --------------------------------------------------------------------

    def read_answer(self, data: Any) -> TextAnswer:
        """``{"output"}``; `parse_response` cuts it."""
        read = self.read
        text = read.need(read.of(data, dict, "the answer"), "output", str)
        return TextAnswer(text, "stop")

    def settle(self, answer: ChatResponse, request: ChatRequest) -> ChatResponse:
        """The answer cut at *request*'s stop strings, and its usage estimated."""
        cut = self._cut_for(request)
        message = answer.choices[0].message
        text, _ = cut_at_stop(message.content or "", cut.stops)
        message.content = text
        answer.usage = Usage(cut.prompt_tokens, estimate_tokens(text) if text else 0)
        return answer

    def _cut_for(self, request: ChatRequest) -> Cut:
        """What `build` kept for *request* (its stop strings, its prompt's size)."""
        cut = self._by_request.pop(id(request), None)
        if cut is None:
            prompt = self.prompter.prompt(request)
            length = min(max_new_tokens(request), self._limit())
            cut = Cut(tuple(prompt.stop), int(prompt.explain["estimated_tokens"]), length)
        return cut

    def read_piece(self, data: Any) -> TextAnswer | None:
        """``{"token", "final"}``: one token; the finish on the last."""
        read = self.read
        event = read.of(data, dict, "a stream event")
        if "token" not in event and ("error" in event or "message" in event):
            raise stream_error(self.connection, event.get("error") or event)
        token = read.field(event, "token", str) or ""
        return TextAnswer(token, "stop" if read.field(event, "final", bool) else None)

    def reader(self, request: ChatRequest) -> TextReader:
        """A reader that cuts the stream at *request*'s stop strings."""
        return NovelAIReader(self, request.model, self._cut_for(request))

    # --- what is asked before a request ----------------------------------------------

    def facts_request(self, model: str) -> UpstreamRequest | None:
        """``GET /user/subscription``: the tier and its context."""
        return UpstreamRequest("GET", self._api() + "/user/subscription", self._headers())

    def read_facts(self, data: Any) -> ModelFacts:
        """``tier`` and ``perks.contextTokens``."""
        read = self.read
        answer = read.of(data, dict, "the subscription")
        perks = read.field(answer, "perks", dict) or {}
        context = read.count(perks, "contextTokens") or None
        tier = read.field(answer, "tier", int)
        if tier is not None:
            self.tier = tier
        note = f"NovelAI subscription tier {tier}: context {context} tokens, "
        note += f"max_length up to {self._limit()}"
        return ModelFacts(context_size=context, note=note)

    # --- models ------------------------------------------------------------------------

    def models_request(self, base_url: str | None = None) -> UpstreamRequest:
        """``GET /user/subscription``: NovelAI lists no models; this free call proves the
        token (the status check), and the models are the fixed ids."""
        return UpstreamRequest("GET", self._api(base_url) + "/user/subscription", self._headers())

    def parse_models(self, data: Any) -> list[str]:
        """The fixed ids, once the subscription answered."""
        self.read.of(data, dict, "the subscription")
        return list(MODELS)


class NovelAIReader(TextReader):
    """NovelAI's stream, cut at the request's stop strings."""

    def __init__(self, adapter: NovelAIAdapter, model: str, cut: Cut) -> None:
        super().__init__(adapter, model)
        self.cutter = StopCutter(cut.stops)
        self.max_length = cut.max_length
        self.tokens = 0

    def feed(self, event: Any) -> list[ChatChunk]:
        """The base's chunks of one ``newToken`` event, their text cut at a stop string;
        the last event's finish is ``length`` when the tokens reached ``max_length``."""
        self.tokens += 1
        out: list[ChatChunk] = []
        for chunk in super().feed(event):
            choice = chunk.choices[0]
            if choice.finish_reason is not None:
                held = self.cutter.flush()
                if held:
                    out.append(self.chunk(Delta(content=held)))
                if self.max_length and self.tokens >= self.max_length:
                    choice.finish_reason = "length"
            elif choice.delta.role is None and choice.delta.content:
                text, stopped = self.cutter.feed(choice.delta.content)
                if text:
                    out.append(self.chunk(Delta(content=text)))
                if stopped:
                    out.append(self.chunk(Delta(), "stop"))
                    self.finished = self.done = True
                    return out
                continue
            out.append(chunk)
        return out
