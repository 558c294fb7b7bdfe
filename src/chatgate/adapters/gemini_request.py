"""An OpenAI request as the body of Gemini's ``generateContent`` (sans I/O).

The leading system messages are ``systemInstruction``; later ones are user turns;
``assistant`` is ``model``; tool calls are ``functionCall`` parts and tool results
``functionResponse`` parts (named after the call they answer); images are
``inlineData`` (data URLs) or ``fileData`` (other URLs); same-role neighbours merge; a
conversation with nothing but a system prompt gets the placeholder user turn, as
Gemini needs at least one content.
"""

from __future__ import annotations

from typing import Any

import orjson

from chatgate.adapters.gemini_schema import to_gemini
from chatgate.adapters.images import image
from chatgate.adapters.wire import Turn, arguments, leading_system, merge_turns
from chatgate.errors import InvalidRequestError
from chatgate.types import ChatRequest, JSONObjectFormat, JSONSchemaFormat, Message

SAFETY_CATEGORIES = (
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)
THINKING_BUDGET = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}


def body(
    request: ChatRequest,
    dropped: list[str],
    placeholder: str,
    safety: list[dict[str, str]] | None,
) -> dict[str, Any]:
    """The ``generateContent`` body for *request*, less the parameters in *dropped*;
    *safety* None turns every filter off."""
    system, contents = _contents(request.messages, placeholder)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    config = _generation_config(request, set(dropped))
    if config:
        out["generationConfig"] = config
    if safety is None:
        safety = [{"category": c, "threshold": "OFF"} for c in SAFETY_CATEGORIES]
    if safety:
        out["safetySettings"] = safety
    _tools(request, out)
    return out


def _contents(
    messages: list[Message], placeholder: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system instruction parts, contents)."""
    system, rest = leading_system(messages)
    instruction = [{"text": m.text()} for m in system if m.text()]
    names = {c.id: c.function.name for m in messages for c in (m.tool_calls or [])}
    offset = len(system)
    turns = merge_turns(
        _turn(message, names, f"messages[{offset + i}]") for i, message in enumerate(rest)
    )
    contents = [{"role": role, "parts": parts} for role, parts in turns]
    if not contents:
        contents.append({"role": "user", "parts": [{"text": placeholder}]})
    return instruction, contents


def _turn(message: Message, names: dict[str, str], param: str) -> Turn:
    if message.role == "tool":
        text = message.text()
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        response = value if isinstance(value, dict) else {"content": text}
        name = names.get(message.tool_call_id or "", "unknown")
        return "user", [{"functionResponse": {"name": name, "response": response}}]
    parts: list[dict[str, Any]] = []
    content = message.content
    if isinstance(content, str):
        if content:
            parts.append({"text": content})
    elif content is not None:
        for index, part in enumerate(content):
            if part.type == "text":
                if part.text:
                    parts.append({"text": part.text})
            elif part.type == "image_url":
                found = image(part.image_url.url, f"{param}.content[{index}]")
                if found.data is not None:
                    parts.append({"inlineData": {"mimeType": found.media_type, "data": found.data}})
                else:
                    parts.append({"fileData": {"mimeType": found.media_type, "fileUri": found.url}})
            elif part.type == "input_audio":
                media = f"audio/{part.input_audio.format}"
                parts.append({"inlineData": {"mimeType": media, "data": part.input_audio.data}})
            elif part.type == "refusal":
                parts.append({"text": part.refusal})
    for index, call in enumerate(message.tool_calls or []):
        args = arguments(call.function.arguments, f"{param}.tool_calls[{index}].function.arguments")
        parts.append({"functionCall": {"name": call.function.name, "args": args}})
    return ("model" if message.role == "assistant" else "user"), parts


def _generation_config(request: ChatRequest, dropped: set[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    pairs = (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("n", "candidateCount"),
    )
    for ours, theirs in pairs:
        value = getattr(request, ours)
        if value is not None and ours not in dropped:
            config[theirs] = value
    if request.completion_limit:
        config["maxOutputTokens"] = request.completion_limit
    if request.stops:
        config["stopSequences"] = request.stops
    fmt = request.response_format
    if isinstance(fmt, JSONSchemaFormat | JSONObjectFormat):
        config["responseMimeType"] = "application/json"
        if isinstance(fmt, JSONSchemaFormat) and fmt.json_schema.schema_:
            config["responseSchema"] = to_gemini(fmt.json_schema.schema_, "response_format")
    effort = (request.model_extra or {}).get("reasoning_effort")
    if isinstance(effort, str) and effort != "none" and "reasoning_effort" not in dropped:
        if effort not in THINKING_BUDGET:
            raise InvalidRequestError(
                f"reasoning_effort must be one of {', '.join(THINKING_BUDGET)} or none",
                param="reasoning_effort",
            )
        config["thinkingConfig"] = {
            "thinkingBudget": THINKING_BUDGET[effort],
            "includeThoughts": True,
        }
    return config


def _tools(request: ChatRequest, body: dict[str, Any]) -> None:
    if not request.tools:
        return
    declarations = []
    for index, tool in enumerate(request.tools):
        entry: dict[str, Any] = {"name": tool.function.name}
        if tool.function.description:
            entry["description"] = tool.function.description
        if tool.function.parameters and tool.function.parameters.get("properties"):
            where = f"tools[{index}].function.parameters"
            entry["parameters"] = to_gemini(tool.function.parameters, where)
        declarations.append(entry)
    body["tools"] = [{"functionDeclarations": declarations}]
    choice = request.tool_choice
    if choice is None:
        return
    if choice == "auto":
        config: dict[str, Any] = {"mode": "AUTO"}
    elif choice == "none":
        config = {"mode": "NONE"}
    elif choice == "required":
        config = {"mode": "ANY"}
    else:
        config = {"mode": "ANY", "allowedFunctionNames": [choice.function.get("name", "")]}
    body["toolConfig"] = {"functionCallingConfig": config}
