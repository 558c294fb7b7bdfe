"""The batched engine with the real model: correctness, fairness, limits, reuse."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

import pytest

from chatgate.config import Connection
from chatgate.engine import Engine, Finished, Piece, Sampling
from chatgate.errors import OverloadedError

pytestmark = pytest.mark.model
GREEDY = Sampling(max_tokens=12, temperature=0)


@pytest.fixture()
async def engine4() -> AsyncIterator[Engine]:
    engine = Engine(Connection(name="t", source="local", parallel=4, context_size=512))
    await engine.ensure_loaded()
    yield engine
    engine.close()


def prompt(engine: Engine, text: str) -> list[int]:
    return engine.tokenize_prompt(engine.render([{"role": "user", "content": text}]), 12)


async def run(engine: Engine, tokens: list[int], sampling: Sampling = GREEDY) -> str:
    out = []
    async for event in engine.generate(tokens, sampling):
        if isinstance(event, Piece):
            out.append(event.text)
    return "".join(out)


async def test_batched_output_equals_solo_output(engine4: Engine) -> None:
    prompts = [
        prompt(engine4, t)
        for t in ("Name a fruit.", "Count to three.", "Say hello in French.", "What is 2+2?")
    ]
    solo = [await run(engine4, p) for p in prompts]
    together = await asyncio.gather(*(run(engine4, p) for p in prompts))
    assert together == solo
    assert all(solo)


async def test_one_sequence_serves_in_arrival_order() -> None:
    engine = Engine(Connection(name="t", source="local", parallel=1, context_size=512))
    await engine.ensure_loaded()
    tokens = prompt(engine, "Hi")
    finished: list[int] = []

    async def one(i: int) -> None:
        await run(engine, tokens, Sampling(max_tokens=3, temperature=0))
        finished.append(i)

    tasks = []
    for i in range(4):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0.01)  # arrive in this order
    await asyncio.gather(*tasks)
    engine.close()
    assert finished == [0, 1, 2, 3]


async def test_full_queue_is_refused_with_retry_after() -> None:
    engine = Engine(Connection(name="t", source="local", parallel=1, max_queue=0, context_size=512))
    await engine.ensure_loaded()
    tokens = prompt(engine, "Tell me a story.")
    endless = Sampling(max_tokens=400, temperature=0, logit_bias={0: -100, 2: -100, 4: -100})
    running = cast(AsyncGenerator[Piece | Finished, None], engine.generate(tokens, endless))
    assert isinstance(await anext(running), Piece)
    with pytest.raises(OverloadedError) as caught:
        await anext(engine.generate(tokens, GREEDY))
    assert caught.value.headers == {"Retry-After": "1"}
    await running.aclose()
    engine.close()


async def test_closing_a_stream_frees_its_sequence(engine4: Engine) -> None:
    tokens = prompt(engine4, "Tell me a story.")
    endless = Sampling(max_tokens=400, temperature=0, logit_bias={0: -100, 2: -100, 4: -100})
    stream = cast(AsyncGenerator[Piece | Finished, None], engine4.generate(tokens, endless))
    await anext(stream)
    assert engine4.status()["busy"] == 1
    await stream.aclose()
    for _ in range(100):
        if engine4.status()["busy"] == 0:
            break
        await asyncio.sleep(0.01)
    assert engine4.status()["busy"] == 0


async def test_follow_up_reuses_the_cached_prefix(engine4: Engine) -> None:
    first = prompt(engine4, "Remember the word apple.")
    await run(engine4, first)
    assert engine4._batcher is not None
    cached = max(engine4._batcher._cached.values(), key=len)
    assert cached[: len(first)] == first
    longer = engine4.tokenize_prompt(
        engine4.render(
            [
                {"role": "user", "content": "Remember the word apple."},
                {"role": "assistant", "content": "OK."},
                {"role": "user", "content": "Which word?"},
            ]
        ),
        12,
    )
    events = [e async for e in engine4.generate(longer, GREEDY)]
    assert isinstance(events[-1], Finished)
    assert events[-1].prompt_tokens == len(longer)
