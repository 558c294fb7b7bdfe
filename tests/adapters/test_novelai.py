"""NovelAI through the real pipeline (`Gateway` → `RemoteBackend` → the exchange) against
the fake NovelAI: the request, whole answers and streams, stop strings cut by chatgate
(NovelAI takes only token ids), the tier's ``max_length`` limit and context, Erato's
prefix, the hosts by model, errors, a lying answer, and the status check."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, cast

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatgate.adapters.novelai import ERATO_PREFIX, StopCutter
from chatgate.config import Connection, Settings, TextOptions
from chatgate.errors import AuthenticationError, InvalidRequestError, UpstreamError
from chatgate.gateway import Gateway
from chatgate.types import FinishReason
from tests.fakes import novelai_server
from tests.fakes.common import json_response, sse, token_ids
from tests.fakes.novelai_server import NovelAIState
from tests.fakes.openai_server import serve
from tests.fakes.text_conftest import fresh, running

TOKEN = novelai_server.NovelAIState().token
PLAIN: dict[str, Any] = {
    "name": "plain",
    "system_suffix": "\n",
    "input_suffix": "\n",
    "sequences_as_stop_strings": False,
}


@pytest.fixture(scope="module")
def novelai_state() -> Iterator[NovelAIState]:
    yield from running(NovelAIState(), novelai_server.build_app)


@pytest.fixture()
def novelai(novelai_state: NovelAIState) -> NovelAIState:
    return fresh(novelai_state)


def gateway(novelai: NovelAIState, preset: dict[str, Any] | None = None, **fields: Any) -> Gateway:
    fields.setdefault("api_key", TOKEN)
    fields.setdefault("text", TextOptions(instruct_preset=preset or PLAIN))
    conn = Connection(name="nai", source="novelai", base_url=novelai.url, **fields)
    return Gateway(Settings(connections=[conn], embedded=False))


def said(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


async def streamed(gw: Gateway, **fields: Any) -> tuple[str, list[FinishReason | None], Any]:
    chunks = [chunk async for chunk in gw.stream(**fields)]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    return text, finishes, chunks


async def test_a_whole_answer(novelai: NovelAIState) -> None:
    async with gateway(novelai) as gw:
        answer = await gw.chat(
            model="nai/kayra-v1",
            messages=said("Say one two three"),
            max_tokens=100,
            temperature=0.8,
            top_p=0.95,
            top_k=50,
            min_p=0.02,
            repetition_penalty=1.05,
            tail_free_sampling=0.9,
        )
    assert answer.choices[0].message.content == "Say one two three"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    sent = novelai.last("/ai/generate")
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.body == {
        "input": "Be brief.\nSay one two three\n",
        "model": "kayra-v1",
        "parameters": {
            "use_string": True,
            "min_length": 1,
            "max_length": 100,
            "temperature": 0.8,
            "top_p": 0.95,
            "top_k": 50,
            "min_p": 0.02,
            "repetition_penalty": 1.05,
            "tail_free_sampling": 0.9,
        },
    }


async def test_a_stream(novelai: NovelAIState) -> None:
    async with gateway(novelai) as gw:
        text, finishes, chunks = await streamed(
            gw,
            model="nai/kayra-v1",
            messages=said("Say one two three"),
            stream_options={"include_usage": True},
        )
        short, short_finishes, _ = await streamed(
            gw, model="nai/kayra-v1", messages=said("Say one two three"), max_tokens=2
        )
    assert text == "Say one two three" and finishes[-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert novelai.last("/ai/generate-stream").body["parameters"]["max_length"] == 2
    assert short == "Say one" and short_finishes[-1] == "length"


async def test_stop_strings_are_cut_by_chatgate(novelai: NovelAIState) -> None:
    asked = {"model": "nai/kayra-v1", "messages": said("Say one two three four")}
    async with gateway(novelai) as gw:
        whole = await gw.chat(**asked, stop=["o th"])
        text, finishes, _ = await streamed(gw, **asked, stop=["o th"])
    # "o th" spans two streamed tokens (" two", " three"): the "o" is held back.
    assert whole.choices[0].message.content == "Say one tw"
    assert text == "Say one tw" and finishes == [None, None, None, None, "stop"]
    assert "stop_sequences" not in novelai.last("/ai/generate").body["parameters"]


async def test_the_templates_stop_strings_are_cut_too(novelai: NovelAIState) -> None:
    preset = {**PLAIN, "stop_sequence": " three"}
    async with gateway(novelai, preset) as gw:
        whole = await gw.chat(model="nai/kayra-v1", messages=said("Say one two three four"))
        text, _, _ = await streamed(gw, model="nai/kayra-v1", messages=said("Say one two three"))
        shown = await gw.preview(model="nai/kayra-v1", messages=said("Hi"))
    assert whole.choices[0].message.content == "Say one two"
    assert text == "Say one two"
    assert shown["prompt"]["stop"] == [" three"] and shown["prompt"]["stop_cut_by_chatgate"]


async def test_token_id_stop_sequences_pass_as_they_are(novelai: NovelAIState) -> None:
    ids = [token_ids("three")]
    async with gateway(novelai) as gw:
        answer = await gw.chat(
            model="nai/kayra-v1", messages=said("Say one two three four"), stop_sequences=ids
        )
    assert answer.choices[0].message.content == "Say one two three"  # NovelAI keeps it
    assert novelai.last("/ai/generate").body["parameters"]["stop_sequences"] == ids


async def test_max_length_follows_the_tier(novelai: NovelAIState) -> None:
    async with gateway(novelai) as gw:
        top = await gw.preview(model="nai/kayra-v1", messages=said("Hi"), max_tokens=400)
    novelai.tier = 1
    async with gateway(novelai) as gw:
        low = await gw.preview(model="nai/kayra-v1", messages=said("Hi"), max_tokens=400)
        quiet = await gw.preview(model="nai/kayra-v1", messages=said("Hi"))
    assert top["body"]["parameters"]["max_length"] == 250
    assert "400 tokens asked; the top tier's limit is 250" in top["prompt"]["max_length"]
    assert low["body"]["parameters"]["max_length"] == 150
    assert "400 tokens asked; NovelAI's limit is 150" in low["prompt"]["max_length"]
    # Not asked for: the limit is used without a word.
    assert quiet["body"]["parameters"]["max_length"] == 150 and "max_length" not in quiet["prompt"]


async def test_the_context_comes_from_the_subscription(novelai: NovelAIState) -> None:
    novelai.context_tokens = 3000
    async with gateway(novelai) as gw:
        shown = await gw.preview(model="nai/kayra-v1", messages=said("Hi"), max_tokens=100)
    assert shown["prompt"]["context_size"] == 3000
    assert shown["prompt"]["note"] == (
        "NovelAI subscription tier 3: context 3000 tokens, max_length up to 250"
    )
    assert novelai.last("/user/subscription").headers["authorization"] == f"Bearer {TOKEN}"


async def test_erato_prompts_carry_its_prefix(novelai: NovelAIState) -> None:
    async with gateway(novelai) as gw:
        answer = await gw.chat(model="nai/llama-3-erato-v1", messages=said("Say hi"))
        shown = await gw.preview(model="nai/llama-3-erato-v1", messages=said("Say hi"))
    assert answer.choices[0].message.content == "Say hi"
    sent = novelai.last("/ai/generate").body["input"]
    assert sent == ERATO_PREFIX + "Be brief.\nSay hi\n"
    assert shown["prompt"]["text"] == sent == shown["body"]["input"]


async def test_the_host_follows_the_model() -> None:
    text = TextOptions(instruct_template="chatml", context_size=4096)  # nothing to ask first
    conn = Connection(name="nai", source="novelai", api_key=TOKEN, text=text)
    async with Gateway(Settings(connections=[conn], embedded=False)) as gw:
        clio = await gw.preview(model="nai/clio-v1", messages=said("Hi"))
        kayra = await gw.preview(model="nai/kayra-v1", messages=said("Hi"), stream=True)
    assert clio["url"] == "https://api.novelai.net/ai/generate"
    assert kayra["url"] == "https://text.novelai.net/ai/generate-stream"
    assert kayra["headers"]["Authorization"] != f"Bearer {TOKEN}"  # masked
    assert TOKEN not in str(kayra)


async def test_a_bad_token_is_a_401_with_the_token_masked(novelai: NovelAIState) -> None:
    wrong = "pst-wrong-token-0123456789"
    async with gateway(novelai, api_key=wrong) as gw:
        with pytest.raises(AuthenticationError) as caught:
            await gw.chat(model="nai/kayra-v1", messages=said("Hi"))
        status = await gw.backend("nai").check_status()
    error = caught.value
    assert error.status == 401 and error.code == "upstream_unauthorized"
    assert "upstream answered 401: Access Token is incorrect." in error.message
    assert wrong not in str(error.to_dict())
    assert status["status"] == "error" and status["http_status"] == 401


async def test_status_and_models(novelai: NovelAIState) -> None:
    async with gateway(novelai) as gw:
        status = await gw.backend("nai").check_status()
        models = [m.id for m in await gw.list_models()]
    assert status["status"] == "ok"
    assert models == ["nai/clio-v1", "nai/kayra-v1", "nai/llama-3-erato-v1"]
    assert novelai.last("/user/subscription").method == "GET"


async def test_an_unknown_model_is_refused_in_novelais_words(novelai: NovelAIState) -> None:
    async with gateway(novelai) as gw:
        with pytest.raises(InvalidRequestError) as caught:
            await gw.chat(model="nai/kayra-v9", messages=said("Hi"))
    assert "Invalid model: kayra-v9" in caught.value.message


def test_the_cutter_holds_back_what_may_start_a_stop() -> None:
    cutter = StopCutter(("</s>", "\nUser:"))
    assert cutter.feed("Hello <") == ("Hello ", False)
    assert cutter.feed("b> and\nUs") == ("<b> and", False)
    assert cutter.feed("ual") == ("\nUsual", False)
    assert cutter.feed(" end\nUser: more") == (" end", True)
    assert StopCutter(()).feed("anything") == ("anything", False)
    held = StopCutter(("STOP",))
    assert held.feed("almost ST") == ("almost ", False) and held.flush() == "ST"


# --- a NovelAI that lies about its answer ----------------------------------------------


def lying_app(answer: Any) -> Starlette:
    async def generate(request: Request) -> Response:
        return json_response(answer, 201)

    async def stream(request: Request) -> Response:
        return Response(sse(answer, "newToken", "1"), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/ai/generate", generate, methods=["POST"]),
            Route("/ai/generate-stream", stream, methods=["POST"]),
        ]
    )


@pytest.mark.parametrize(
    ("answer", "what"),
    [
        ({"output": 5}, "'output' is a number where a string belongs"),
        ({"text": "hi"}, "'output' is null where a string belongs"),
        (["hi"], "the answer is an array where an object belongs"),
    ],
)
async def test_a_lying_answer_is_a_502(answer: Any, what: str) -> None:
    runner = cast(Generator[str, None, None], serve(lying_app(answer)))
    url = next(runner)
    try:
        text = TextOptions(instruct_template="chatml", context_size=4096)
        conn = Connection(name="liar", source="novelai", base_url=url, api_key=TOKEN, text=text)
        async with Gateway(Settings(connections=[conn], embedded=False)) as gw:
            with pytest.raises(UpstreamError) as caught:
                await gw.chat(model="liar/kayra-v1", messages=said("Hi"))
    finally:
        runner.close()
    assert caught.value.status == 502 and caught.value.code == "bad_upstream_response"
    assert what in caught.value.message


@pytest.mark.parametrize(
    ("event", "code", "what"),
    [
        ({"token": 5, "final": True}, "bad_upstream_response", "'token' is a number"),
        ({"token": "hi", "final": "yes"}, "bad_upstream_response", "'final' is a string"),
        ({"statusCode": 500, "message": "boom"}, None, "upstream error in the stream: boom"),
    ],
)
async def test_a_lying_or_failing_stream_is_a_502(event: Any, code: str | None, what: str) -> None:
    runner = cast(Generator[str, None, None], serve(lying_app(event)))
    url = next(runner)
    try:
        text = TextOptions(instruct_template="chatml", context_size=4096)
        conn = Connection(name="liar", source="novelai", base_url=url, api_key=TOKEN, text=text)
        async with Gateway(Settings(connections=[conn], embedded=False)) as gw:
            with pytest.raises(UpstreamError) as caught:
                await streamed(gw, model="liar/kayra-v1", messages=said("Hi"))
    finally:
        runner.close()
    assert caught.value.status == 502 and caught.value.code == code
    assert what in caught.value.message
