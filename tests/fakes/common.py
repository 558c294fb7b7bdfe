"""What the native-protocol fakes share: a request log, model-name behaviours, and
answers made from the request itself (so a wrong translation shows in the answer)."""

from __future__ import annotations

from dataclasses import dataclass, field
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
