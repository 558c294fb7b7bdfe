"""``n`` by parallel requests: seeds, merging, interleaving, and a failing copy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chatgate.backends import fanout
from chatgate.errors import UpstreamError
from chatgate.types import ChatChunk, ChatRequest, ChunkChoice, Delta, Usage
from chatgate.validation import parse_chat_request


def request(**fields: object) -> ChatRequest:
    return parse_chat_request(
        {"model": "c/m", "messages": [{"role": "user", "content": "Hi"}], **fields}
    )


def test_copies_ask_for_one_answer_each_with_their_own_seed() -> None:
    singles = fanout.copies(request(n=3, seed=10))
    assert [r.n for r in singles] == [None, None, None]
    assert [r.seed for r in singles] == [10, 11, 12]
    assert [r.seed for r in fanout.copies(request(n=2))] == [None, None]


async def test_interleave_relabels_sums_usage_and_raises_a_failure() -> None:
    async def stream(single: ChatRequest) -> AsyncIterator[ChatChunk]:
        seed = single.seed or 0
        yield ChatChunk("id", 1, "m", [ChunkChoice(0, Delta(content=f"s{seed}"))])
        yield ChatChunk("id", 1, "m", [], Usage(5, 2))

    chunks = [c async for c in fanout.interleave(request(n=2, seed=1, stream=True,
              stream_options={"include_usage": True}), stream)]  # fmt: skip
    seen = {c.choices[0].index: c.choices[0].delta.content for c in chunks if c.choices}
    assert seen == {0: "s1", 1: "s2"}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4

    async def broken(single: ChatRequest) -> AsyncIterator[ChatChunk]:
        if single.seed == 2:
            raise UpstreamError("copy 2 broke")
        yield ChatChunk("id", 1, "m", [ChunkChoice(0, Delta(content="ok"))])

    with pytest.raises(UpstreamError, match="copy 2 broke"):
        async for _ in fanout.interleave(request(n=2, seed=1, stream=True), broken):
            pass
