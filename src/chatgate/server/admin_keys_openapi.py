"""The OpenAPI path items of ``/api/keys`` (`chatgate.server.admin_keys`), merged into
the admin API's by `chatgate.server.admin_openapi`."""

from __future__ import annotations

from typing import Any

from chatgate.server.openapi import EDGE, json_content, operation
from chatgate.server.openapi_shapes import INTEGER, STRING, json_object

NAMES = {"type": "array", "items": STRING, "description": "Empty (or absent): every one."}
LIMIT = {"type": ["integer", "null"], "minimum": 1, "maximum": 2**31 - 1}
BUDGET = {"type": ["integer", "null"], "minimum": 1, "maximum": 2**63 - 1}
WHEN = {"type": ["string", "null"], "description": "ISO 8601"}
USAGE = json_object({"period": STRING, "requests": INTEGER, "tokens": INTEGER})
GATEWAY_KEY = json_object(
    {
        "label": STRING,
        "role": {"enum": ["admin", "client"]},
        "masked": STRING,
        "connections": NAMES,
        "models": NAMES,
        "rpm": LIMIT,
        "tpm": LIMIT,
        "budget_tokens": BUDGET,
        "expires_at": WHEN,
        "revoked_at": WHEN,
        "created_at": STRING,
        "usage": USAGE,
    }
)
CREATED = {
    **GATEWAY_KEY,
    "properties": {**GATEWAY_KEY["properties"], "key": STRING},
    "required": [*GATEWAY_KEY["required"], "key"],
}
LABEL = {"type": "string", "pattern": "^[A-Za-z0-9_.@-]{1,64}$"}
NEW_GATEWAY_KEY = {
    "type": "object",
    "required": ["label"],
    "additionalProperties": False,  # an unknown field is a 400, not ignored
    "properties": {
        "label": LABEL,
        "role": {"enum": ["admin", "client"]},
        "connections": NAMES,
        "models": NAMES,
        "rpm": LIMIT,
        "tpm": LIMIT,
        "budget_tokens": BUDGET,
        "expires_at": WHEN,
    },
    "description": "A gateway key's label, role and limits (docs/keys.md).",
}
KEYS = json_object({"keys": {"type": "array", "items": GATEWAY_KEY}})
STATUSES = (400, *EDGE, 404, 409, 413, 415, 503)


def path_items() -> dict[str, Any]:
    """``/api/keys`` as OpenAPI path items."""
    create = operation(
        "Create a gateway key; the key is in this answer only",
        json_content(CREATED),
        STATUSES,
        body=NEW_GATEWAY_KEY,
    )
    create["responses"]["201"] = create["responses"].pop("200")
    create["responses"]["201"]["description"] = "Created"
    label = {
        "name": "label",
        "in": "path",
        "required": True,
        "schema": STRING,
        "description": "A gateway key's label.",
    }
    return {
        "/api/keys": {
            "get": operation(
                "Every gateway key, masked, with this month's usage",
                json_content(KEYS),
                (*EDGE, 503),
            ),
            "post": create,
        },
        "/api/keys/{label}": {
            "delete": operation(
                "Revoke a gateway key", json_content(GATEWAY_KEY), STATUSES, params=[label]
            )
        },
    }
