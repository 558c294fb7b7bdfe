"""A KoboldCpp generate body (``/api/v1/generate``, ``/api/extra/generate/stream``) as
one chatgate request to the kobold door's default model.

The fields follow KoboldCpp's own reading of them (``koboldcpp.py``'s ``generate``):
the shared samplers become chatgate's (``max_length`` → ``max_tokens``, ``rep_pen`` →
``repetition_penalty``, ``sampler_seed`` → ``seed``, ``stop_sequence`` → ``stop``,
``grammar`` → ``guided_grammar``); KoboldCpp's own samplers are passed on under their
names to a backend that takes them (a KoboldCpp upstream; llama.cpp's spelling where it
has one), and left out at the values that turn them off, so that another backend is
only asked for a sampler the client really uses. Fields of the KoboldAI API that
KoboldCpp ignores (``use_story``, ``quiet``, …) are ignored here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from chatgate.errors import InvalidRequestError, UnsupportedParameterError
from chatgate.gateway import Gateway
from chatgate.model_info import natives_of
from chatgate.server.doors.reach import default_model
from chatgate.server.doors.text_doors import (
    SHARED_KNOBS,
    Knob,
    checked,
    json_object_body,
    read_knobs,
)
from chatgate.types import ChatRequest
from chatgate.validation import parse_chat_request

DOOR_NAME = "kobold"
DEFAULT_MAX_LENGTH = 180  # tokens: KoboldCpp's default when a request names none
MAX_STOPS = 256  # KoboldCpp's stop_token_max
MAX_GENKEY = 256
LOGPROBS_SHOWN = 5  # alternatives per token KoboldCpp reports (its logprobs_max)


def _not(value: Any) -> bool:
    return not value


KNOBS: dict[str, Knob] = {
    **SHARED_KNOBS,
    "max_length": Knob("int", to="max_tokens", low=1),
    # KoboldCpp cuts the prompt to this from the front; chatgate sends a client's prompt
    # whole, so the backend's own context is what bounds it.
    "max_context_length": Knob("int", low=1, ignored=True),
    "temperature": Knob("number", to="temperature", low=0, high=2),
    "top_p": Knob("number", to="top_p", off=1, low=0, high=1),
    "top_k": Knob("int", to="top_k", off=0, low=0),
    "min_p": Knob("number", to="min_p", off=0, low=0, high=1),
    "rep_pen": Knob("number", to="repetition_penalty", off=1, low=0, high=10),
    "rep_pen_range": Knob("int", needs="rep_pen", spellings=("repeat_last_n",), low=0),
    "rep_pen_slope": Knob("number", needs="rep_pen"),
    "presence_penalty": Knob("number", to="presence_penalty", off=0, low=-2, high=2),
    "typical": Knob("number", off=1, spellings=("typical_p",), low=0, high=1),
    "tfs": Knob("number", off=1, low=0, high=1),
    "top_a": Knob("number", off=0, low=0),
    "nsigma": Knob("number", off=0, spellings=("top_n_sigma",)),
    "smoothing_factor": Knob("number", off=0, low=0),
    "smoothing_curve": Knob("number", needs="smoothing_factor"),
    # An order among KoboldCpp's samplers: other backends have their own, fixed.
    "sampler_order": Knob("ints", hint=True),
    "sampler_seed": Knob("int", to="seed", off=-1),
    "stop_sequence": Knob("strings", to="stop", off=[]),
    "trim_stop": Knob(
        "bool", to="include_stop_str_in_output", off=True, convert=_not, native_first=True
    ),
    "use_default_badwordsids": Knob("bool", off=False, spellings=("ignore_eos",)),
    "ban_eos_token": Knob("bool", off=False, spellings=("use_default_badwordsids", "ignore_eos")),
    "bypass_eos": Knob("bool", off=False),
    "render_special": Knob("bool", off=False),
    "banned_tokens": Knob("strings", off=[]),
    "banned_strings": Knob("strings", off=[], spellings=("banned_tokens",)),
    "logit_bias": Knob("object", to="logit_bias", off={}),
    # A server that takes GBNF itself gets it as it is; elsewhere chatgate enforces it.
    "grammar": Knob("str", to="guided_grammar", off="", native_first=True),
    "grammar_retain_state": Knob("bool", off=False, needs="grammar"),
    "logprobs": Knob("bool", to="logprobs", off=False),
    "n": Knob("int", to="n", off=1, low=1, high=128),
}


@dataclass(frozen=True, slots=True)
class Generate:
    """A generate body as chatgate's request, and what its answer needs."""

    request: ChatRequest
    genkey: str = ""
    logprobs: bool = False


def decode(raw: bytes, gateway: Gateway, *, stream: bool) -> Generate:
    """A generate body, validated (a 400 naming the field), for the door's default model."""
    body = json_object_body(raw)
    model = default_model(gateway, DOOR_NAME)
    prompt = text_field(body, "prompt", required=True)
    memory = text_field(body, "memory")
    if not prompt and not memory:
        raise InvalidRequestError(
            "'prompt' is empty: the model needs a text to continue",
            param="prompt",
            code="invalid_value",
        )
    images = body.get("images")
    if images is not None and checked("images", images, Knob("strings")):
        raise UnsupportedParameterError(
            "'images' is not supported through the KoboldCpp door: send images through a "
            "chat door (OpenAI, Anthropic, Ollama) to a multimodal model",
            param="images",
        )
    genkey = text_field(body, "genkey")
    if len(genkey) > MAX_GENKEY:
        raise InvalidRequestError(
            f"'genkey' is over {MAX_GENKEY} characters", param="genkey", code="invalid_value"
        )
    breakers = body.get("dry_sequence_breakers")
    if isinstance(breakers, str):
        body["dry_sequence_breakers"] = _breakers(breakers)
    natives = natives_of(gateway, model)
    fields = read_knobs(body, KNOBS, natives)
    stops: list[str] = fields.pop("stop", [])
    if len(stops) > MAX_STOPS:
        raise InvalidRequestError(
            f"'stop_sequence' has {len(stops)} strings; KoboldCpp takes at most {MAX_STOPS}",
            param="stop_sequence",
            code="invalid_value",
        )
    if stream and fields.get("n", 1) > 1:
        raise InvalidRequestError(
            "'n' above 1 cannot be streamed: KoboldCpp's stream carries one text",
            param="n",
            code="invalid_value",
        )
    if fields.get("logprobs"):
        fields["top_logprobs"] = LOGPROBS_SHOWN
    text = prompt
    if memory and "memory" in natives:
        fields["memory"] = memory  # a KoboldCpp upstream keeps it through its truncation
    else:
        text = memory + prompt
    fields.setdefault("max_tokens", DEFAULT_MAX_LENGTH)
    request = parse_chat_request(
        {
            **fields,
            "model": model,
            "messages": [{"role": "user", "content": memory + prompt}],
            "raw_prompt": text,
            # Streamed inside even for a whole answer: an abort returns the text so far.
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    if stops:
        # KoboldCpp takes many stop strings (a chat's every name); OpenAI's limit of 4
        # is not this API's, so they are set after the validation that has it.
        request = request.without(stop=stops)
    return Generate(request, genkey, bool(fields.get("logprobs")))


def text_field(body: dict[str, Any], name: str, *, required: bool = False) -> str:
    """The string field *name* of *body* (empty when absent); a 400 naming it otherwise."""
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequestError(
                f"missing required parameter: '{name}'",
                param=name,
                code="missing_required_parameter",
            )
        return ""
    text: str = checked(name, value, Knob("str"))
    return text


def _breakers(text: str) -> Any:
    """SillyTavern's JSON-encoded ``dry_sequence_breakers``, as the array it encodes
    (KoboldCpp reads it so); the text as it is when it is no JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
