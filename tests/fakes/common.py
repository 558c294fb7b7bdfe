"""What the native-protocol fakes share: a request log, model-name behaviours, and
answers made from the request itself (so a wrong translation shows in the answer)."""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tests.fakes.openai_server import Seen

TEXT = "Hello from the fake."
TEXT_PIECES = ["Hello", " from", " the", " fake."]
WEATHER_ARGS = {"city": "Paris", "unit": "celsius"}


@dataclass
class FakeState:
    """What a fake saw; its URL."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)

    def last(self, suffix: str) -> Seen:
        """The most recent request whose path ends with *suffix*."""
        for seen in reversed(self.seen):
            if seen.path.endswith(suffix):
                return seen
        raise AssertionError(f"no request to *{suffix}; saw {[s.path for s in self.seen]}")

    async def record(self, request: Request) -> Any:
        """Log the request; its JSON body."""
        raw = await request.body()
        body = orjson.loads(raw) if raw else None
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        self.seen.append(Seen(request.method, path, dict(request.headers), body))
        return body


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON answer."""
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def sample(schema: dict[str, Any]) -> Any:
    """A value that satisfies a simple JSON schema (what a model would produce)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next(k for k in kind if k != "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: sample(sub) for name, sub in props.items()}
    if kind == "array":
        return [sample(schema.get("items", {"type": "string"}))]
    return {"string": "Paris", "integer": 3, "number": 1.5, "boolean": True}.get(kind)


def pieces(text: str, size: int = 4) -> list[str]:
    """*text* cut into small pieces, as streams deliver it."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# --- Helpers for the text-completion fakes (KoboldCpp, llama.cpp, Ollama, OpenAI-style
# text servers, AI Horde, NovelAI). -------------------------------------------------------


# Every word the fakes' tokenizer has seen, by id, so that ids can be turned back.
VOCABULARY: dict[int, str] = {}


def token_ids(text: str) -> list[int]:
    """The fakes' tokenizer: one token per whitespace-separated word, its id
    ``crc32(word) % 32000 + 100`` (deterministic, never below 100)."""
    ids = []
    for word in text.split():
        token = zlib.crc32(word.encode()) % 32000 + 100
        VOCABULARY.setdefault(token, word)
        ids.append(token)
    return ids


def token_text(ids: list[int]) -> str:
    """The words of *ids*, space-separated (an id never seen is ``<unk>``)."""
    return " ".join(VOCABULARY.get(i, "<unk>") for i in ids)


def echo_pieces(prompt: str) -> list[str]:
    """What a text fake 'generates' for *prompt*: the prompt's last non-blank line,
    stripped, cut into words (each after the first keeps its leading whitespace); the
    fake's usual text when the prompt is blank."""
    lines = [line.strip() for line in prompt.splitlines() if line.strip()]
    if not lines:
        return list(TEXT_PIECES)
    return re.findall(r"\s*\S+", lines[-1])


@dataclass
class Generation:
    """A text fake's answer: the streamed pieces, why it ended, which stop ended it."""

    pieces: list[str]
    finish: str  # "stop" (end of text or a stop sequence) or "length" (the limit)
    stop_word: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def generate(
    words: list[str], limit: int | None, stops: Sequence[str] = (), keep_stop: bool = False
) -> Generation:
    """*words* cut at *limit* pieces (``None``: no limit) and at the earliest stop
    sequence found in what remains (kept when *keep_stop*, else cut before it)."""
    kept = words if limit is None or limit < 0 else words[:limit]
    finish = "length" if len(kept) < len(words) else "stop"
    full = "".join(kept)
    hits = [(full.find(s), s) for s in stops if s and s in full]
    if not hits:
        return Generation(list(kept), finish)
    at, word = min(hits)
    end = at + len(word) if keep_stop else at
    out: list[str] = []
    done = 0
    for piece in kept:
        if done >= end:
            break
        out.append(piece[: end - done])
        done += len(piece)
    return Generation(out, "stop", word)


KIND_CHECKS: dict[str, Callable[[Any], bool]] = {
    "any": lambda v: True,
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "list[int]": lambda v: (
        isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
    ),
    "list[list[int]]": lambda v: (
        isinstance(v, list)
        and all(
            isinstance(x, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in x)
            for x in v
        )
    ),
    "str|list[str]": lambda v: (
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
    ),
    "str|object": lambda v: isinstance(v, str | dict),
}


def type_problems(body: dict[str, Any], spec: dict[str, str]) -> dict[str, str]:
    """The fields of *body* named in *spec* whose value is not of the kind given there
    (a key of `KIND_CHECKS`), mapped to that kind. ``null`` counts as absent. Stricter
    than pydantic's lax mode: numeric strings and booleans are not numbers."""
    return {
        name: kind
        for name, kind in spec.items()
        if body.get(name) is not None and not KIND_CHECKS[kind](body[name])
    }


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def sse(data: Any, event: str | None = None, event_id: str | None = None) -> bytes:
    """One server-sent event: optional ``event:`` and ``id:`` lines, then JSON data."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def grammar_text(grammar: str) -> str | None:
    """What a GBNF grammar whose root rule is only string literals (``root ::= "yes" |
    "no"``) admits first; ``None`` for any other grammar."""
    match = re.search(r"^\s*root\s*::=\s*(.+)$", grammar, re.MULTILINE)
    if not match:
        return None
    literal = r'"((?:[^"\\]|\\.)*)"'
    alternatives = match.group(1).strip()
    if not re.fullmatch(rf"{literal}(\s*\|\s*{literal})*", alternatives):
        return None
    first = re.match(literal, alternatives)
    return orjson.loads(f'"{first.group(1)}"') if first else None


def reset_state(state: Any) -> None:
    """Put every field of a fake's state dataclass back to its default, keeping its URL."""
    fresh = type(state)()
    for spec in fields(state):
        if spec.name != "url":
            setattr(state, spec.name, getattr(fresh, spec.name))


class Runs:
    """Generations that can be stopped from outside (KoboldCpp's abort by genkey,
    text-generation-webui's stop-generation): a key's event is set to stop it."""

    def __init__(self) -> None:
        self.running: dict[str, asyncio.Event] = {}

    def start(self, key: str) -> asyncio.Event:
        event = asyncio.Event()
        self.running[key] = event
        return event

    def stop(self, key: str | None = None) -> bool:
        """Stop the run of *key* (every run when ``None``); whether one was running."""
        keys = list(self.running) if key is None else [key]
        hit = [self.running.pop(k) for k in keys if k in self.running]
        for event in hit:
            event.set()
        return bool(hit)

    def finish(self, key: str) -> None:
        self.running.pop(key, None)


async def paced(
    pieces: list[str], delay: float, stopped: asyncio.Event | None = None
) -> AsyncIterator[str]:
    """*pieces* one by one, *delay* seconds apart, ending early once *stopped* is set."""
    for number, piece in enumerate(pieces):
        if number and delay:
            await asyncio.sleep(delay)
        if stopped is not None and stopped.is_set():
            return
        yield piece


CHATML_JINJA = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""A GGUF-style Jinja chat template (ChatML), what llama.cpp and KoboldCpp report."""
