"""How a text-completion connection turns one chat into one prompt string, without I/O.

The prompt comes from a Jinja chat template (the request's ``chat_template``, the
connection's, or with ``chat_template = "backend"`` the model's own) or from an
instruct preset (the connection's ``instruct_template``, else the one whose telltale
sequences the model's own template shows, else ChatML). Before rendering, the
conversation is fitted to the context: ``context_size`` less the tokens asked for,
counted with the model's chars-per-token once the server's tokenizer told it, else a
conservative estimate. `Prompter.prompt` says in ``explain`` what it chose and why.

What the server knows (the model's template, its BOS text, its context) and what a
template rendered arrive through `chatgate.upstream.Question`s, answered by the
exchange: a Jinja template is code, so it never runs here.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatgate.adapters.engine_wire import template_message
from chatgate.config import TextOptions
from chatgate.errors import OverloadedError
from chatgate.prompt import instruct
from chatgate.prompt.fitting import Fitted, estimate_tokens, fit
from chatgate.types import ChatRequest, Message
from chatgate.upstream import Question, TemplateRender

DEFAULT_CONTEXT = 4096  # tokens, when neither the connection nor the server says
DEFAULT_MAX_NEW = 512  # tokens a reply may take when the client does not say
DEFAULT_PRESET = "chatml"
FACTS_TTL = 300.0  # seconds what a server said of a model is trusted
RENDERED_KEPT = 1024  # rendered templates kept, waiting for the request that asked
# A prompt this share of the budget or more is worth the server's own token count.
CALIBRATE_AT = 0.5
TEMPLATE_TOPIC, COUNT_TOPIC, RENDER_TOPIC = "template:", "count:", "render:"


@dataclass(slots=True)
class ModelFacts:
    """What the server said about one model (or why it said nothing)."""

    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""
    context_size: int | None = None
    note: str | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class TextPrompt:
    """The prompt string, the stop strings that go with it, and why it is so."""

    text: str
    stop: list[str]
    explain: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Choice:
    jinja: str | None  # a template's source, or None for a preset
    param: str | None  # the request field a Jinja template came from
    preset: instruct.InstructTemplate | None
    why: str


def max_new_tokens(request: ChatRequest) -> int:
    """The tokens the reply may take."""
    return request.max_tokens or request.max_completion_tokens or DEFAULT_MAX_NEW


class Prompter:
    """One connection's way from chats to prompt strings."""

    def __init__(self, options: TextOptions, connection: str, adds_bos: bool) -> None:
        self.options, self.connection, self.adds_bos = options, connection, adds_bos
        self.facts: dict[str, ModelFacts] = {}
        self.chars_per_token: dict[str, float] = {}
        self._rendered: OrderedDict[str, str] = OrderedDict()
        self._fixed = _configured_preset(options)

    # --- what must be known first ------------------------------------------------

    def wants_facts(self, model: str) -> bool:
        """Whether the model's template and context are worth asking the server for."""
        known = self.facts.get(model)
        if known is not None and time.monotonic() - known.at < FACTS_TTL:
            return False
        options = self.options
        jinja_given = options.chat_template not in (None, "backend")
        no_context = options.context_size is None
        return no_context or (self._fixed is None and not jinja_given)

    def learn_facts(self, model: str, facts: ModelFacts) -> None:
        """Keep what the server said about *model*."""
        self.facts[model] = facts

    def wants_count(self, request: ChatRequest) -> str | None:
        """The prompt text whose token count would calibrate this model's estimate, when
        the prompt is long enough for the count to matter and none was made yet."""
        model = request.model_name
        if model in self.chars_per_token or request.raw_prompt is not None:
            return None
        choice = self._choose(request)
        if choice.preset is None:
            return None
        text = instruct.render(
            request.messages, choice.preset, continue_last=_prefill(request.messages)
        ).text
        if estimate_tokens(text) < CALIBRATE_AT * self._budget(request):
            return None
        return text

    def learn_count(self, model: str, chars: int, tokens: int | None) -> None:
        """Keep the model's characters per token from a count of *chars* characters
        (*tokens* None: the server could not count, and is not asked again)."""
        if tokens is None or tokens <= 0:
            self.chars_per_token[model] = 0.0
            return
        self.chars_per_token[model] = max(1.0, min(8.0, chars / tokens))

    def render_question(self, request: ChatRequest) -> Question | None:
        """The Jinja rendering *request* needs, when it is not made yet."""
        if request.raw_prompt is not None:
            return None
        choice = self._choose(request)
        if choice.jinja is None:
            return None
        kept = self._fit(request, choice).messages
        key = self._key(request, choice.jinja, kept)
        if key in self._rendered:
            return None
        facts = self.facts.get(request.model_name) or ModelFacts()
        ask = TemplateRender(
            choice.jinja,
            [template_message(m) for m in kept],
            bos_token=facts.bos_token,
            eos_token=facts.eos_token,
            extra=dict(request.chat_template_kwargs or {}),
            param=choice.param,
        )
        return Question(RENDER_TOPIC + key, ask)

    def learn_render(self, topic: str, text: str) -> None:
        """Keep a rendering until the request that asked for it is built."""
        self._rendered[topic.removeprefix(RENDER_TOPIC)] = text
        while len(self._rendered) > RENDERED_KEPT:
            self._rendered.popitem(last=False)

    # --- the prompt ----------------------------------------------------------------

    def prompt(self, request: ChatRequest) -> TextPrompt:
        """The prompt for *request*, fitted to the context, with its stop strings."""
        if request.raw_prompt is not None:
            return _raw(request, self._context(request))
        choice = self._choose(request)
        fitted = self._fit(request, choice)
        facts = self.facts.get(request.model_name) or ModelFacts()
        if choice.preset is not None:
            rendered = instruct.render(
                fitted.messages, choice.preset, continue_last=_prefill(fitted.messages)
            )
            text, stop, name = rendered.text, list(rendered.stop), rendered.template
        else:
            key = self._key(request, choice.jinja or "", fitted.messages)
            found = self._rendered.get(key)
            if found is None:  # evicted by a thousand other renders since it was asked
                raise OverloadedError(
                    f"connection '{self.connection}': the prompt's rendering was lost "
                    "under load; send the request again",
                    code="prompt_not_ready",
                )
            text, stop, name = found, [facts.eos_token] if facts.eos_token else [], "jinja"
            if self.adds_bos and facts.bos_token and text.startswith(facts.bos_token):
                text = text[len(facts.bos_token) :]  # the server adds its own
        stop = _unique([*stop, *_client_stops(request)])
        explain: dict[str, Any] = {
            "text": text,
            "template": name,
            "why": choice.why,
            "context_size": self._context(request),
            "max_new_tokens": max_new_tokens(request),
            "estimated_tokens": fitted.tokens,
            "messages_cut": fitted.cut,
            "stop": stop,
        }
        if facts.note:
            explain["note"] = facts.note
        return TextPrompt(text, stop, explain)

    # --- the decisions -------------------------------------------------------------

    def _choose(self, request: ChatRequest) -> _Choice:
        options = self.options
        facts = self.facts.get(request.model_name)
        if request.chat_template is not None:
            return _Choice(
                request.chat_template, "chat_template", None, "the request's chat_template"
            )
        if options.chat_template == "backend":
            if facts is not None and facts.chat_template:
                return _Choice(facts.chat_template, None, None, "the model's own chat template")
            why = "the server did not tell the model's chat template"
            why += f" ({facts.note})" if facts is not None and facts.note else ""
            return _Choice(None, None, instruct.preset(DEFAULT_PRESET), why + "; ChatML instead")
        if options.chat_template is not None:
            return _Choice(options.chat_template, None, None, "the connection's chat_template")
        if self._fixed is not None:
            return _Choice(None, None, self._fixed, "the connection's instruct template")
        if facts is not None and facts.chat_template:
            guessed = instruct.guess(facts.chat_template)
            if guessed is not None:
                name, reason = guessed
                return _Choice(None, None, instruct.preset(name), f"guessed: {reason}")
            why = "the model's chat template matches no preset; ChatML is the default"
            return _Choice(None, None, instruct.preset(DEFAULT_PRESET), why)
        why = "no template is known for this model"
        why += f" ({facts.note})" if facts is not None and facts.note else ""
        return _Choice(None, None, instruct.preset(DEFAULT_PRESET), why + "; ChatML is the default")

    def _context(self, request: ChatRequest) -> int:
        facts = self.facts.get(request.model_name)
        known = facts.context_size if facts is not None else None
        return self.options.context_size or known or DEFAULT_CONTEXT

    def _budget(self, request: ChatRequest) -> int:
        return max(1, self._context(request) - max_new_tokens(request))

    def _fit(self, request: ChatRequest, choice: _Choice) -> Fitted:
        ratio = self.chars_per_token.get(request.model_name) or 0.0
        # A server's own count is trusted less 5%: tokens of a cut differ from a whole.
        per_token = ratio * 0.95 if ratio else 3.0
        preset = choice.preset

        def measure(messages: Sequence[Message]) -> int:
            if preset is not None:
                text = instruct.render(messages, preset, continue_last=_prefill(messages)).text
                return estimate_tokens(text, per_token)
            # A Jinja template is not run here: its text plus a little framing per turn.
            size = sum(len(m.text()) + 16 for m in messages)
            return int(size / per_token) + 1

        return fit(request.messages, self._budget(request), measure)

    @staticmethod
    def _key(request: ChatRequest, source: str, messages: Sequence[Message]) -> str:
        digest = hashlib.sha256(source.encode())
        digest.update(orjson.dumps([template_message(m) for m in messages]))
        digest.update(orjson.dumps(request.chat_template_kwargs or {}, option=orjson.OPT_SORT_KEYS))
        return digest.hexdigest()


def _raw(request: ChatRequest, context: int) -> TextPrompt:
    """The client's own prompt text: no template, no fitting (the text is the client's
    to shape), only the client's stop strings."""
    text = request.raw_prompt or ""
    stop = _unique(_client_stops(request))
    explain: dict[str, Any] = {
        "text": text,
        "template": "raw",
        "why": "the client sent the prompt text itself, so no template applies",
        "context_size": context,
        "max_new_tokens": max_new_tokens(request),
        "estimated_tokens": estimate_tokens(text),
        "messages_cut": 0,
        "stop": stop,
    }
    return TextPrompt(text, stop, explain)


def _configured_preset(options: TextOptions) -> instruct.InstructTemplate | None:
    if options.instruct_preset is not None:
        return instruct.load_template(options.instruct_preset)
    if options.instruct_template:
        return instruct.preset(options.instruct_template)
    return None


def _prefill(messages: Sequence[Message]) -> bool:
    # A conversation that ends with the assistant's words is a prefill: the reply
    # continues them instead of starting a new turn.
    return bool(messages) and messages[-1].role == "assistant"


def _client_stops(request: ChatRequest) -> list[str]:
    stop = request.stop
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def _unique(items: list[str]) -> list[str]:
    return [item for item in dict.fromkeys(items) if item]
