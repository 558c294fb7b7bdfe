"""Source ``local``: chat requests answered by the embedded engine."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, replace
from typing import Any

from chatgate.adapters.base import refuse_or_drop, set_fields
from chatgate.config import Connection
from chatgate.engine import Engine, Finished, Piece, Sampling
from chatgate.engine.grammar import OutputContract, contract_for
from chatgate.errors import InvalidRequestError, UnsupportedParameterError, UpstreamError
from chatgate.types import (
    AssistantMessage,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    Message,
    TextPart,
    Usage,
)

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
# A constrained output that fails its final check (the grammar covers only a subset of
# JSON Schema) is generated again with another seed this many times before giving up.
CONSTRAINED_RETRIES = 2
TEMPLATE_SECONDS = 2.0  # the longest a request's own chat_template may take to render


def new_completion_id() -> str:
    """An id in OpenAI's style."""
    return "chatcmpl-" + secrets.token_hex(12)


class LocalBackend:
    """The embedded llama.cpp engine behind the chat-completions interface."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.engine = Engine(connection)

    def models(self) -> list[str]:
        """The one model this connection serves."""
        return [self.connection.model_alias]

    def unsupported(self, request: ChatRequest) -> list[str]:
        """Parameters the engine cannot honour; tools are refused unless disabled."""
        names = [n for n in set_fields(request) if n not in SUPPORTED]
        if request.tools and request.tool_choice == "none":
            names = [n for n in names if n not in ("tools", "tool_choice")]
        for message in request.messages:
            if isinstance(message.content, list) and any(
                not isinstance(p, TextPart) for p in message.content
            ):
                raise UnsupportedParameterError(
                    "the embedded model reads text only; images and audio need a "
                    "connection to a multimodal model",
                    param="messages",
                )
        return refuse_or_drop(names, self.connection, "the embedded engine")

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Load the model (in a thread) so the first request does not wait for it."""
        await asyncio.to_thread(self.engine.load, progress)

    def status(self) -> dict[str, Any]:
        """Engine load and queue figures."""
        return {"source": "local", "status": "ok", **self.engine.status()}

    async def close(self) -> None:
        """Stop the engine's threads."""
        self.engine.close()

    async def list_models(self, *, refresh: bool = False) -> dict[str, Any]:
        """The one model, named by ``model_alias``."""
        return {
            "connection": self.connection.name,
            "models": self.models(),
            "upstream": [],
            "manual": [],
            "note": None,
        }

    async def check_status(self) -> dict[str, Any]:
        """Loads the model if needed; its load and queue figures."""
        await self.engine.ensure_loaded()
        return {"connection": self.connection.name, **self.status()}

    async def send_test(self, model: str | None = None) -> dict[str, Any]:
        """A real "Hi" through the engine (free: it runs on this machine)."""
        request = ChatRequest.model_validate(
            {
                "model": f"{self.connection.name}/{model or self.connection.model_alias}",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 16,
            }
        )
        started = time.perf_counter()
        answer = await self.chat(request)
        return {
            "connection": self.connection.name,
            "model": self.connection.model_alias,
            "ok": True,
            "reply": answer.text,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "usage": answer.usage.to_dict(),
            "billed": False,
            "billing_note": "the embedded model runs on this machine; nothing is billed",
        }

    async def preview(self, request: ChatRequest) -> dict[str, Any]:
        """The prompt text and sampling settings the engine would use."""
        self.unsupported(request)
        tokens, sampling, _ = await self._prepare(request)
        settings = {k: v for k, v in asdict(sampling).items() if k != "grammar"}
        settings["logit_bias"] = {str(k): v for k, v in sampling.logit_bias.items()}
        return {
            "connection": self.connection.name,
            "source": "local",
            "method": "LOCAL",
            "url": f"llama.cpp://{self.engine.path}",
            "headers": {},
            "body": {
                "prompt": await self._render_async(request),
                "prompt_tokens": len(tokens),
                "sampling": settings,
                "grammar": sampling.grammar,
            },
            "stream": bool(request.stream),
        }

    # --- the request -------------------------------------------------------------

    async def _prepare(
        self, request: ChatRequest
    ) -> tuple[list[int], Sampling, OutputContract | None]:
        await self.engine.ensure_loaded()
        prompt = await self._render_async(request)
        tokens = self.engine.tokenize_prompt(prompt, request.completion_limit)
        bias = self.engine.model.check_logit_bias(request.logit_bias or {})
        contract = contract_for(request)
        return tokens, _sampling(request, bias, contract), contract

    def _render(self, request: ChatRequest) -> str:
        messages = [_template_message(m) for m in request.messages]
        return self.engine.render(messages, request.chat_template, request.chat_template_kwargs)

    async def _render_async(self, request: ChatRequest) -> str:
        if request.chat_template is None:
            return self._render(request)
        # A client's template is code: render it off the event loop, within a deadline.
        try:
            async with asyncio.timeout(TEMPLATE_SECONDS):
                return await asyncio.to_thread(self._render, request)
        except TimeoutError:
            raise InvalidRequestError(
                f"chat_template took longer than {TEMPLATE_SECONDS:g} s to render",
                param="chat_template",
            ) from None

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Generate every choice and assemble one answer."""
        tokens, sampling, contract = await self._prepare(request)
        n = request.n or 1
        tried = max(n, request.best_of or 1)
        # best_of: more candidates than answers; the n most likely (by the mean
        # log-probability of their tokens) are returned, as vLLM does.
        scoring = replace(sampling, logprobs=True) if tried > n else sampling
        results = await asyncio.gather(
            *(self._one_choice(tokens, _seeded(scoring, i), contract) for i in range(tried))
        )
        usage = Usage(len(tokens), sum(fin.completion_tokens for _, _, fin in results))
        if tried > n:
            results = sorted(results, key=_mean_logprob, reverse=True)[:n]
            if not sampling.logprobs:
                results = [(text, [], fin) for text, _, fin in results]
        choices = [
            Choice(
                index=i,
                message=AssistantMessage(content=text),
                finish_reason=fin.finish_reason,
                logprobs={"content": lps, "refusal": None} if sampling.logprobs else None,
            )
            for i, (text, lps, fin) in enumerate(results)
        ]
        return ChatResponse(
            id=new_completion_id(),
            created=int(time.time()),
            model=request.model,
            choices=choices,
            usage=usage,
            system_fingerprint=self.engine.fingerprint,
        )

    async def _one_choice(
        self, tokens: list[int], sampling: Sampling, contract: OutputContract | None
    ) -> tuple[str, list[dict[str, Any]], Finished]:
        for attempt in range(CONSTRAINED_RETRIES + 1):
            parts: list[str] = []
            logprobs: list[dict[str, Any]] = []
            finished: Finished | None = None
            async for event in self.engine.generate(tokens, _seeded(sampling, 1000 * attempt)):
                if isinstance(event, Finished):
                    finished = event
                else:
                    parts.append(event.text)
                    logprobs += event.logprobs or []
            if finished is None:
                raise UpstreamError("the embedded engine stopped without finishing")
            text = "".join(parts)
            # Cut short by max_tokens: returned as it is, flagged by finish_reason.
            if contract is None or finished.finish_reason == "length":
                return text, logprobs, finished
            try:
                contract.check(text)
                return text, logprobs, finished
            except UpstreamError:
                if attempt == CONSTRAINED_RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream each choice in turn: role, content pieces, finish; usage last."""
        tokens, sampling, contract = await self._prepare(request)
        cid, created = new_completion_id(), int(time.time())
        fp = self.engine.fingerprint

        def chunk(index: int, delta: Delta, finish: Any = None, lp: Any = None) -> ChatChunk:
            return ChatChunk(
                cid,
                created,
                request.model,
                [ChunkChoice(index, delta, finish, lp)],
                system_fingerprint=fp,
            )

        completion_tokens = 0
        for index in range(request.n or 1):
            yield chunk(index, Delta(role="assistant", content=""))
            text: list[str] = []
            async for event in self.engine.generate(tokens, _seeded(sampling, index)):
                if isinstance(event, Piece):
                    text.append(event.text)
                    lp = {"content": event.logprobs, "refusal": None} if event.logprobs else None
                    yield chunk(index, Delta(content=event.text), lp=lp)
                    continue
                completion_tokens += event.completion_tokens
                if contract is not None and event.finish_reason == "stop":
                    contract.check("".join(text))
                yield chunk(index, Delta(), event.finish_reason)
        if request.stream_options and request.stream_options.include_usage:
            yield ChatChunk(
                cid,
                created,
                request.model,
                [],
                Usage(len(tokens), completion_tokens),
                system_fingerprint=fp,
            )


def _mean_logprob(result: tuple[str, list[dict[str, Any]], Finished]) -> float:
    entries = result[1]
    return sum(float(e["logprob"]) for e in entries) / len(entries) if entries else -1e9


def _template_message(message: Message) -> dict[str, Any]:
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


def _sampling(
    request: ChatRequest, bias: dict[int, float], contract: OutputContract | None
) -> Sampling:
    defaults = Sampling()
    return Sampling(
        max_tokens=request.completion_limit,
        temperature=defaults.temperature if request.temperature is None else request.temperature,
        top_p=defaults.top_p if request.top_p is None else request.top_p,
        top_k=defaults.top_k if request.top_k is None else request.top_k,
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        seed=request.seed,
        stop=tuple(request.stops),
        include_stop=bool(request.include_stop_str_in_output),
        logit_bias=bias,
        grammar=contract.grammar if contract else None,
        grammar_param=contract.param if contract else "response_format",
        logprobs=bool(request.logprobs),
        top_logprobs=request.top_logprobs or 0,
    )


def _seeded(sampling: Sampling, offset: int) -> Sampling:
    """The same sampling with the seed moved by *offset* (for n > 1 and retries)."""
    if offset == 0 or sampling.seed is None:
        return sampling
    return replace(sampling, seed=sampling.seed + offset)
