"""What the text-source tests share: the conversation and the ChatML prompt it renders
to, and a server that answers whatever a test says, for answers no honest fake gives:
fields of the wrong type, a stream line that is not the protocol. Every route answers
the same `Liar.answer` (a JSON value), or with `Liar.lines` a stream of those raw
lines, one after another, under `Liar.media_type`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.common import json_response
from tests.fakes.openai_server import serve

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CHAT: list[Any] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello"},
    {"role": "user", "content": "Say Paris"},
]
CHATML_PROMPT = (
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nSay Paris<|im_end|>\n"
    "<|im_start|>assistant\n"
)


@dataclass
class Liar:
    """What the liar answers; its URL."""

    url: str = ""
    answer: Any = None
    lines: list[bytes] = field(default_factory=list)
    media_type: str = "application/x-ndjson"
    status: int = 200


def build_app(state: Liar) -> Starlette:
    async def anything(request: Request) -> Response:
        await request.body()
        if state.lines:

            async def body() -> AsyncIterator[bytes]:
                for line in state.lines:
                    yield line

            return StreamingResponse(body(), media_type=state.media_type)
        return json_response(state.answer, state.status)

    methods = ["GET", "POST"]
    return Starlette(routes=[Route("/{path:path}", anything, methods=methods)])


def running() -> Generator[Liar, None, None]:
    """A liar on loopback until the caller is done."""
    state = Liar()
    for url in serve(build_app(state)):
        state.url = url
        yield state
