"""The OpenAPI path items of the admin API's store routes (`chatgate.server.admin_store`)
and of the web page (`chatgate.server.web`), merged by `chatgate.server.openapi`."""

from __future__ import annotations

from typing import Any

from chatgate.server.admin_keys_openapi import path_items as gateway_keys_items
from chatgate.server.openapi import EDGE, json_content, operation, parameter
from chatgate.server.openapi_shapes import ANY_OBJECT, INTEGER, STRING, json_object

BOOLEAN = {"type": "boolean"}
KEY = json_object(
    {
        "label": STRING,
        "masked": STRING,
        "active": BOOLEAN,
        "readable": BOOLEAN,
        "created_at": STRING,
    }
)
CONNECTION = json_object(
    {
        "name": STRING,
        "source": STRING,
        "origin": {"enum": ["config", "store"]},
        "keys": {"type": "array", "items": KEY},
    }
)
CONNECTIONS = json_object({"connections": {"type": "array", "items": CONNECTION}})
NEW_CONNECTION = {
    "type": "object",
    "required": ["name", "source"],
    "properties": {"name": STRING, "source": STRING, "base_url": STRING, "api_key": STRING},
    "description": "The fields of a `[[connections]]` table (docs/connections.md).",
}
NEW_KEY = {
    "type": "object",
    "required": ["label", "key"],
    "properties": {"label": STRING, "key": STRING, "activate": BOOLEAN},
}
ROTATED_KEY = {"type": "object", "required": ["key"], "properties": {"key": STRING}}
GROUP = json_object({"requests": INTEGER, "errors": INTEGER, "tokens_in": INTEGER})
USAGE = json_object({"groups": {"type": "array", "items": GROUP}, "total": GROUP})
SOURCES = json_object({"sources": {"type": "array", "items": ANY_OBJECT}})
STORE = (400, *EDGE, 404, 409, 413, 415, 503)
PAGE = {"text/html": {"schema": STRING}}


def _no_content(summary: str, statuses: tuple[int, ...]) -> dict[str, Any]:
    item = operation(summary, {}, statuses)
    item["responses"]["204"] = item["responses"].pop("200")
    item["responses"]["204"].pop("content")
    item["responses"]["204"]["description"] = "Done"
    return item


def path_items() -> dict[str, Any]:
    """Every admin store route and the page's, as OpenAPI path items."""
    name = parameter("path", "name", STRING, "A connection's name.")
    label = parameter("path", "label", STRING, "A key's label.")
    when = {"type": "string", "description": "ISO 8601"}
    groups = "Any of connection, model, door, caller, day, hour, comma-separated."
    keyless: list[dict[str, list[str]]] = [{}, {"bearer": []}, {"apiKey": []}]
    return {
        **gateway_keys_items(),  # /api/keys (chatgate.server.admin_keys_openapi)
        "/": {"get": {**operation("The web page", PAGE, ()), "security": keyless}},
        "/static/{name}": {
            "get": {
                **operation(
                    "One of the page's files",
                    {"*/*": {"schema": STRING}},
                    (404,),
                    params=[parameter("path", "name", STRING, "The file's name.")],
                ),
                "security": keyless,
            }
        },
        "/metrics": {
            "get": operation(
                "Prometheus metrics (docs/metrics.md)",
                {"text/plain": {"schema": STRING}},
                (*EDGE, 404),
            )
        },
        "/api/sources": {"get": operation("The source catalogue", json_content(SOURCES), EDGE)},
        "/api/connections": {
            "get": operation("Every connection, keys masked", json_content(CONNECTIONS), EDGE),
            "post": operation(
                "Add a connection to the store, served at once",
                json_content(CONNECTION),
                STORE,
                body=NEW_CONNECTION,
            ),
        },
        "/api/connections/{name}": {
            "get": operation(
                "One connection", json_content(CONNECTION), (*EDGE, 404), params=[name]
            ),
            "patch": operation(
                "Change a store connection (a JSON merge patch, validated whole)",
                json_content(CONNECTION),
                STORE,
                body={"type": "object"},
                params=[name],
            ),
            "delete": {**_no_content("Delete a store connection", STORE), "parameters": [name]},
        },
        "/api/connections/{name}/keys": {
            "post": operation(
                "Add a labelled key", json_content(KEY), STORE, body=NEW_KEY, params=[name]
            )
        },
        "/api/connections/{name}/keys/{label}": {
            "put": operation(
                "Rotate a key: the label keeps its place with a new secret",
                json_content(KEY),
                STORE,
                body=ROTATED_KEY,
                params=[name, label],
            ),
            "delete": {**_no_content("Delete a key", STORE), "parameters": [name, label]},
        },
        "/api/connections/{name}/keys/{label}/activate": {
            "post": operation(
                "Make a key the active one", json_content(KEY), STORE, params=[name, label]
            )
        },
        "/api/usage": {
            "get": operation(
                "Requests, errors, tokens and latency, grouped",
                json_content(USAGE),
                (400, *EDGE, 503),
                params=[
                    parameter("query", "connection", STRING, "Only this connection."),
                    parameter("query", "since", when, "From this time on."),
                    parameter("query", "until", when, "Before this time."),
                    parameter("query", "group_by", STRING, groups),
                ],
            )
        },
    }
