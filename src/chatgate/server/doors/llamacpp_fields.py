"""A llama-server ``POST /completion`` body as one chatgate request to the llama.cpp
door's default model.

The fields follow llama-server's ``/completion`` documentation (``tools/server/
README.md``): the shared samplers become chatgate's (``n_predict`` → ``max_tokens``,
``repeat_penalty`` → ``repetition_penalty``, ``grammar`` → ``guided_grammar``,
``json_schema`` → ``guided_json``, ``n_probs`` → log-probabilities); llama.cpp's own
samplers go on under their names to a backend that takes them (a llama.cpp upstream;
KoboldCpp's spelling where it has one) and are left out at the values that turn them
off. Hints (``cache_prompt``, ``samplers``, ``id_slot``) reach a llama.cpp upstream
only. Fields llama-server does not know are ignored, as it ignores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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

DOOR_NAME = "llamacpp"
RANDOM_SEED = 0xFFFFFFFF  # llama-server's LLAMA_DEFAULT_SEED: a random seed
MAX_STOPS = 256
MAX_PROBS = 20  # the alternatives chatgate's request may ask for per token
# Echoed in `generation_settings`, as the client set them.
SETTINGS = (
    "temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty",
    "repeat_last_n", "presence_penalty", "frequency_penalty", "mirostat", "seed",
    "n_probs", "ignore_eos", "grammar",
)  # fmt: skip


def _bias(value: Any) -> dict[str, float]:
    """llama.cpp's ``[[id, bias | false], ...]`` (or OpenAI's object) as OpenAI's
    ``{"id": bias}``; ``false`` (never this token) is the lowest bias, -100."""
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        pairs = [(p[0], p[1]) for p in value]
    else:
        raise InvalidRequestError(
            "'logit_bias' must be [[token, bias], ...] or {token: bias}",
            param="logit_bias",
            code="invalid_type",
        )
    out: dict[str, float] = {}
    for token, bias in pairs:
        if bias is False:
            bias = -100.0
        if type(bias) not in (int, float) or not isinstance(token, str | int):
            raise InvalidRequestError(
                "'logit_bias' entries are a token and a number (or false)",
                param="logit_bias",
                code="invalid_type",
            )
        out[str(token)] = max(-100.0, min(100.0, float(bias)))
    return out


KNOBS: dict[str, Knob] = {
    **SHARED_KNOBS,
    "temperature": Knob("number", to="temperature", low=0, high=2),
    "top_k": Knob("int", to="top_k", off=0, low=0),
    "top_p": Knob("number", to="top_p", off=1, low=0, high=1),
    "min_p": Knob("number", to="min_p", off=0, low=0, high=1),
    "typical_p": Knob("number", off=1, spellings=("typical",), low=0, high=1),
    "repeat_penalty": Knob("number", to="repetition_penalty", off=1, low=0, high=10),
    "repeat_last_n": Knob("int", needs="repeat_penalty", spellings=("rep_pen_range",), low=-1),
    "presence_penalty": Knob("number", to="presence_penalty", off=0, low=-2, high=2),
    "frequency_penalty": Knob("number", to="frequency_penalty", off=0, low=-2, high=2),
    "top_n_sigma": Knob("number", off=-1, spellings=("nsigma",)),
    "seed": Knob("int", to="seed", off=(-1, RANDOM_SEED), low=-1, high=RANDOM_SEED),
    "ignore_eos": Knob("bool", off=False, spellings=("use_default_badwordsids",)),
    "logit_bias": Knob("any", to="logit_bias", off=([], {}), convert=_bias),
    # A server that takes GBNF itself gets it as it is; elsewhere chatgate enforces it.
    "grammar": Knob("str", to="guided_grammar", off="", native_first=True),
    "json_schema": Knob("object", to="guided_json"),
    "n_probs": Knob("int", to="top_logprobs", off=0, low=0, high=MAX_PROBS),
    "min_keep": Knob("int", off=0, low=0),
    "t_max_predict_ms": Knob("int", off=0, low=0),
    "n_indent": Knob("int", off=0, low=0),
    "n_cmpl": Knob("int", off=1, low=1),
    "return_tokens": Knob("bool", off=False),
    "post_sampling_probs": Knob("bool", off=False),
    "lora": Knob("any", off=[]),
    "response_fields": Knob("any", off=[]),
    "samplers": Knob("any", hint=True),
    "cache_prompt": Knob("bool", hint=True),
    "id_slot": Knob("int", hint=True, low=-1),
    "n_keep": Knob("int", hint=True, low=-1),
    "n_cache_reuse": Knob("int", hint=True, low=0),
    "timings_per_token": Knob("bool", ignored=True),
    "return_progress": Knob("bool", ignored=True),
    "model": Knob("any", ignored=True),  # one model per server; the door's default here
}


@dataclass(frozen=True, slots=True)
class Completion:
    """A ``/completion`` body as chatgate's request, and what its answer echoes."""

    request: ChatRequest
    prompt: str
    n_probs: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


def decode(raw: bytes, gateway: Gateway) -> Completion:
    """A ``/completion`` body, validated (a 400 naming the field), for the door's
    default model."""
    body = json_object_body(raw)
    model = default_model(gateway, DOOR_NAME)
    prompt = _prompt(body)
    stream = body.get("stream")
    stream = bool(checked("stream", stream, Knob("bool"))) if stream is not None else False
    fields = read_knobs(body, KNOBS, natives_of(gateway, model))
    n_predict = body.get("n_predict")
    n_predict = -1 if n_predict is None else checked("n_predict", n_predict, Knob("int"))
    if n_predict == 0 or n_predict < -1:
        raise InvalidRequestError(
            f"'n_predict' must be -1 (no limit) or at least 1, got {n_predict}: chatgate "
            "does not evaluate a prompt without generating",
            param="n_predict",
            code="invalid_value",
        )
    if n_predict > 0:
        fields["max_tokens"] = n_predict
    stops = _stops(body.get("stop"))
    if fields.get("top_logprobs"):
        fields["logprobs"] = True
    for name in ("image_data", "multimodal_data"):
        if body.get(name):
            raise UnsupportedParameterError(
                f"'{name}' is not supported through the llama.cpp door: send images through "
                "a chat door (OpenAI, Anthropic, Ollama) to a multimodal model",
                param=name,
            )
    request = parse_chat_request(
        {
            **fields,
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "raw_prompt": prompt,
            "stream": stream,
            # The last frame tells the token counts, which the usage chunk carries.
            **({"stream_options": {"include_usage": True}} if stream else {}),
        }
    )
    if stops:
        # llama-server takes any number of stop strings; OpenAI's limit of 4 is not this
        # API's, so they are set after the validation that has it.
        request = request.without(stop=stops)
    settings: dict[str, Any] = {k: body[k] for k in SETTINGS if body.get(k) is not None}
    settings.update(n_predict=n_predict, stop=stops, stream=stream, model=model)
    return Completion(request, prompt, int(fields.get("top_logprobs") or 0), settings)


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequestError(
            '"prompt" must be provided', param="prompt", code="missing_required_parameter"
        )
    if isinstance(prompt, list | dict):
        raise UnsupportedParameterError(
            "'prompt' must be one string here: token ids, several prompts and multimodal "
            "prompts are not supported (POST /detokenize gives the text of ids)",
            param="prompt",
        )
    text: str = checked("prompt", prompt, Knob("str"))
    if not text:
        raise InvalidRequestError(
            "'prompt' is empty: the model needs a text to continue",
            param="prompt",
            code="invalid_value",
        )
    return text


def _stops(value: Any) -> list[str]:
    if value is None:
        return []
    stops: list[str] = (
        [value] if isinstance(value, str) else checked("stop", value, Knob("strings"))
    )
    stops = [s for s in stops if s]
    if len(stops) > MAX_STOPS:
        raise InvalidRequestError(
            f"'stop' has {len(stops)} strings; the limit is {MAX_STOPS}",
            param="stop",
            code="invalid_value",
        )
    return stops
