"""``GET /openapi.json``: the document lists exactly the routes the app serves, is valid
OpenAPI 3.1, and is served behind the gateway key."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from chatgate.config import Settings
from chatgate.gateway import Gateway
from chatgate.server.app import CHAT_ROUTES, Edge, create_app
from chatgate.server.openapi import build_document, request_schemas
from chatgate.types import ChatRequest
from tests.conftest import LiveServer, start_server

GATEWAY_KEY = "gw-openapi-test-key-0001"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def served_routes() -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) of every route the app answers."""
    app = create_app(Gateway(Settings(embedded=False)))
    assert isinstance(app, Edge)
    served: set[tuple[str, str]] = set(CHAT_ROUTES)
    for route in app.app.routes:
        assert isinstance(route, Route)
        # "{model_id:path}" is Starlette's converter; OpenAPI names the parameter only.
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        # Starlette adds HEAD to every GET route by itself; nobody documents it.
        served |= {(m, path) for m in route.methods or () if m != "HEAD"}
    return served


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation in *document*."""
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def test_the_document_lists_exactly_the_served_routes() -> None:
    assert documented_routes(build_document()) == served_routes()


def test_every_route_the_issue_names_is_there() -> None:
    expected = {
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/{model_id}"),
        ("POST", "/v4/beta/chat/completions"),
        ("GET", "/healthz"),
        ("GET", "/api/connections"),
        ("GET", "/api/connections/{name}/models"),
        ("GET", "/api/connections/{name}/status"),
        ("POST", "/api/connections/{name}/test"),
        ("POST", "/api/preview"),
        ("GET", "/openapi.json"),
        # The forgiving URLs: the OpenAI routes at the root too.
        ("POST", "/chat/completions"),
        ("GET", "/models"),
        ("GET", "/models/{model_id}"),
    }
    assert expected <= documented_routes(build_document())


def test_it_validates_as_openapi_3_1() -> None:
    document = build_document()
    assert document["openapi"].startswith("3.1.")
    validate(document)  # raises with the first violation


def _refs(value: Any) -> Iterator[str]:
    """Every ``$ref`` (and discriminator mapping) inside *value*, however deep."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" or (key == "mapping" and isinstance(item, str)):
                yield item
            elif key == "mapping":
                yield from item.values()
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def test_every_reference_resolves() -> None:
    document = build_document()
    refs = set(_refs(document))
    assert "#/components/schemas/SGPImagePart" in refs
    names = {f"#/components/schemas/{name}" for name in document["components"]["schemas"]}
    assert refs <= names


def test_the_request_body_is_chat_request_s_own_schema() -> None:
    schema = request_schemas()["ChatRequest"]
    generated = ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = generated.pop("$defs")
    assert schema == generated
    # The one addition: the role rule of Message's validator.
    assert {**defs["Message"], "allOf": request_schemas()["Message"]["allOf"]} == request_schemas()[
        "Message"
    ]


def _check(document: dict[str, Any], name: str, value: Any) -> None:
    """*value* against the component schema *name*, refs resolved within *document*."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    jsonschema.Draft202012Validator(schema).validate(value)


@pytest.mark.parametrize(
    "body",
    [
        {"model": "fake/m", "messages": [{"content": "Hi"}]},
        {
            "model": "fake/m",
            "messages": [{"role": "user", "content": {"type": "text", "text": "x"}}],
        },
        {
            "model": "fake/m",
            "messages": [
                {
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "iVBO", "media_type": "image/png"},
                        }
                    ]
                }
            ],
        },
    ],
)
def test_the_v4_schema_takes_sgp_s_looser_shapes(body: dict[str, Any]) -> None:
    document = build_document()
    _check(document, "SGPChatRequest", body)
    with pytest.raises(jsonschema.ValidationError):
        _check(document, "ChatRequest", body)


def test_the_error_shapes_match_what_each_door_sends() -> None:
    document = build_document()
    _check(document, "Error", {"error": {"message": "m", "type": "t", "param": None, "code": None}})
    _check(document, "V4Error", {"detail": "m"})
    _check(
        document, "V4Error", {"detail": [{"loc": ["body", "messages", 0], "msg": "m", "type": "t"}]}
    )
    with pytest.raises(jsonschema.ValidationError):
        _check(document, "V4Error", {"error": {"message": "m"}})


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    settings = Settings(embedded=False)
    settings.server.api_keys = [GATEWAY_KEY]
    info, uv, thread = start_server(settings)
    yield info
    uv.should_exit = True
    thread.join(timeout=10)


def test_it_is_served_behind_the_key(server: LiveServer) -> None:
    with server.client() as http:
        answer = http.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == build_document()
    anonymous = httpx.get(f"{server.url}/openapi.json", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "missing_api_key"
