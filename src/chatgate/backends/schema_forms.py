"""The form a JSON-schema constraint goes upstream in, learned per connection.

A source row lists the forms its servers may take (`Source.schema_forms`): OpenAI's
``json_schema``, llama.cpp's ``json_object`` + ``schema``, or none (sent unconstrained,
and chatgate checks the answer). A request is sent in the first form not known to be
refused; a refusal moves to the next, and the form that worked is kept for the
connection's later requests (until a restart).
"""

from __future__ import annotations

import logging

from chatgate.adapters import guided
from chatgate.errors import ChatgateError, InvalidRequestError
from chatgate.exchange.errors import UpstreamAnsweredError
from chatgate.sources import SchemaForm, Source
from chatgate.types import ChatRequest
from chatgate.urls import mask_userinfo

log = logging.getLogger("chatgate.connections")

# What a server answers when it refuses a JSON schema in the form it was sent: a 400 or
# 422, or a 500 (llama_cpp.server's, with a traceback chatgate does not relay).
REFUSED = (InvalidRequestError, UpstreamAnsweredError)
FORM_NAMES: dict[SchemaForm, str] = {
    "json_schema": "response_format json_schema",
    "json_object": "response_format json_object + schema (llama.cpp's form)",
    "none": "no response_format",
}
# A form to try, with its place in the source's list (None: the request as it is).
Tried = tuple[int, SchemaForm | None]


def refuses_schema(exc: ChatgateError) -> bool:
    """Whether *exc* may be a refusal of the schema's form: not a prompt too long."""
    return exc.code != "context_length_exceeded"


class SchemaForms:
    """One connection's schema forms, and the one it learned works."""

    def __init__(self, connection: str, source: Source) -> None:
        self.connection, self.source = connection, source
        self.learned = 0  # the place, in the source's list, of the form that works

    def forms(self, request: ChatRequest) -> list[Tried]:
        """The forms to send *request*'s JSON schema in, in order, with their places in
        the source's list: from the one this connection learned works (or the
        client's own, when later) to the last. One entry, None, for a request without
        a schema or a source with one form."""
        forms = self.source.schema_forms
        asked = guided.form_of(request)
        if asked is None or len(forms) < 2:
            return [(0, None)]
        start = max(self.learned, forms.index(asked) if asked in forms else 0)
        return [(at, forms[at]) for at in range(start, len(forms))]

    def refused(self, form: SchemaForm, exc: ChatgateError) -> None:
        """The upstream refused *form*: the next one is tried."""
        log.warning(
            "connection '%s': the upstream refused a JSON schema as %s (%s); trying the next form",
            self.connection,
            FORM_NAMES[form],
            mask_userinfo(exc.message[:300]),
        )

    def worked(self, position: int, form: SchemaForm | None, forms: list[Tried]) -> None:
        """Remember *form* when it worked after another was refused."""
        if form is None or position == forms[0][0]:
            return
        self.learned = position
        log.warning(
            "connection '%s': sending a JSON schema as %s from now on%s",
            self.connection,
            FORM_NAMES[form],
            " (chatgate checks each answer against it)" if form == "none" else "",
        )
