"""``n`` for sources that give one answer per request: n requests at once, merged.

Each copy asks for one answer (with ``seed + i`` when a seed is set, so the answers
differ as they would with a native ``n``); the answers become choices ``0 … n-1``,
their usage is summed. Streams run side by side and their chunks are interleaved as
they come, each relabelled with its choice index, as OpenAI streams ``n`` choices.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from chatgate.types import ChatChunk, ChatRequest, ChatResponse, Choice, Usage


def copies(request: ChatRequest) -> list[ChatRequest]:
    """*request* as ``n`` single-answer requests."""
    seed = request.seed
    return [
        request.without("n", **({} if seed is None else {"seed": seed + index}))
        for index in range(request.n or 1)
    ]


async def gather(
    request: ChatRequest, send: Callable[[ChatRequest], Awaitable[ChatResponse]]
) -> ChatResponse:
    """The ``n`` answers of *request*, as one response."""
    answers = await asyncio.gather(*(send(r) for r in copies(request)))
    first = answers[0]
    choices = []
    for index, answer in enumerate(answers):
        for choice in answer.choices:
            choice.index = index
            choices.append(choice)
    usage = Usage(
        first.usage.prompt_tokens,  # the same prompt each time: counted once, as OpenAI does
        sum(a.usage.completion_tokens for a in answers),
    )
    return ChatResponse(
        first.id, first.created, first.model, choices, usage, first.system_fingerprint
    )


def candidates(request: ChatRequest) -> ChatRequest:
    """The request for ``best_of``'s candidates: ``n = best_of``, with log-probabilities."""
    return request.without("best_of", n=request.best_of, logprobs=True)


async def best_of(
    request: ChatRequest,
    send: Callable[[ChatRequest], Awaitable[ChatResponse]],
    *,
    native_n: bool,
) -> ChatResponse:
    """``best_of`` candidates, one request each with log-probabilities; the ``n`` with
    the highest mean token log-probability are the answer (vLLM's rule)."""
    n = request.n or 1
    asked = candidates(request)
    merged = await (send(asked) if native_n else gather(asked, send))

    def score(choice: Choice) -> float:
        tokens = (choice.logprobs or {}).get("content") or []
        return sum(float(t["logprob"]) for t in tokens) / len(tokens) if tokens else -1e9

    chosen = sorted(merged.choices, key=score, reverse=True)[:n]
    for index, choice in enumerate(chosen):
        choice.index = index
        if not request.logprobs:
            choice.logprobs = None
    merged.choices = chosen
    return merged


async def interleave(
    request: ChatRequest, open_stream: Callable[[ChatRequest], AsyncIterator[ChatChunk]]
) -> AsyncIterator[ChatChunk]:
    """The ``n`` streams of *request*, as one stream of indexed choices."""
    queue: asyncio.Queue[tuple[int, ChatChunk | BaseException | None]] = asyncio.Queue()
    wants_usage = bool(request.stream_options and request.stream_options.include_usage)

    async def pump(index: int, single: ChatRequest) -> None:
        try:
            async for chunk in open_stream(single):
                await queue.put((index, chunk))
            await queue.put((index, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            await queue.put((index, exc))

    singles = copies(request)
    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(singles)]
    running = len(tasks)
    prompt = completion = 0
    last: ChatChunk | None = None
    try:
        while running:
            index, item = await queue.get()
            if item is None:
                running -= 1
                continue
            if isinstance(item, BaseException):
                raise item
            if item.usage is not None and not item.choices:
                prompt = item.usage.prompt_tokens
                completion += item.usage.completion_tokens
                continue
            for choice in item.choices:
                choice.index = index
            last = item
            yield item
        if wants_usage and last is not None:
            usage = Usage(prompt, completion)
            yield ChatChunk(last.id, last.created, last.model, [], usage, last.system_fingerprint)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
