"""AI Horde through the real pipeline (`Gateway` → `RemoteBackend` → the exchange's job
runner) against the fake Horde: the job's request, polling until done, faulted and
impossible jobs, the withdrawal of an abandoned job, stop strings cut from the text, a
stream answered as chunks, the keys, a lying status, and the preview's status line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Generator, Iterator
from typing import Any, cast

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatgate import __version__
from chatgate.config import Connection, Settings, TextOptions
from chatgate.errors import AuthenticationError, UpstreamError
from chatgate.gateway import Gateway
from tests.fakes import horde_server
from tests.fakes.common import json_response
from tests.fakes.horde_server import HordeState, HordeWorker
from tests.fakes.openai_server import serve
from tests.fakes.text_conftest import fresh, running

KEY = "horde-key-7Qm2x9Rk0042wxyz"
MODEL = "koboldcpp/Llama-3-8B-Fake"
# A template whose prompt ends with the user's line, which the fake echoes back.
PLAIN: dict[str, Any] = {
    "name": "plain",
    "system_suffix": "\n",
    "input_suffix": "\n",
    "sequences_as_stop_strings": False,
}
FAST = 0.05  # seconds between polls


@pytest.fixture(scope="module")
def horde_state() -> Iterator[HordeState]:
    yield from running(HordeState(), horde_server.build_app)


@pytest.fixture()
def horde(horde_state: HordeState) -> HordeState:
    return fresh(horde_state)


def gateway(horde: HordeState, **fields: Any) -> Gateway:
    fields.setdefault("api_key", KEY)
    fields.setdefault("text", TextOptions(instruct_preset=PLAIN, poll_interval=FAST))
    conn = Connection(name="horde", source="horde", base_url=horde.url + "/api/v2", **fields)
    return Gateway(Settings(connections=[conn], embedded=False))


def said(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def polls(horde: HordeState) -> list[str]:
    return [s.path for s in horde.seen if s.method == "GET" and "/text/status/" in s.path]


async def test_a_job_is_submitted_polled_and_read(horde: HordeState) -> None:
    horde.polls_to_finish = 4
    async with gateway(horde) as gw:
        answer = await gw.chat(
            model=f"horde/{MODEL}",
            messages=said("Say one two three"),
            max_tokens=100,
            temperature=0.5,
            top_p=0.9,
            top_k=40,
            min_p=0.05,
            repetition_penalty=1.1,
        )
    assert answer.choices[0].message.content == "Say one two three"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    submit = horde.last("/generate/text/async")
    body = submit.body
    assert body["prompt"].endswith("Say one two three\n")
    assert body["models"] == [MODEL] and body["trusted_workers"] is False
    assert body["params"] == {
        "max_length": 100,
        "max_context_length": 8192,  # the one worker serving the model says so
        "n": 1,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "min_p": 0.05,
        "rep_pen": 1.1,
    }
    assert submit.headers["apikey"] == KEY
    assert submit.headers["client-agent"] == f"chatgate:{__version__}:https://github.com/chatgate"
    assert len(polls(horde)) == 4  # done at the fourth poll, not asked again
    assert horde.cancelled == []


async def test_the_queue_is_logged_while_waiting(
    horde: HordeState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="chatgate.connections")
    async with gateway(horde) as gw:
        await gw.chat(model=f"horde/{MODEL}", messages=said("Hi"))
    lines = [r.getMessage() for r in caplog.records if "queue position" in r.getMessage()]
    # Polls 1 and 2 of 3: two left, then one (the fake counts its queue down).
    assert [line.split(": ", 2)[2] for line in lines] == [
        "queue position 1, wait time 4.0 s",
        "queue position 0, wait time 2.0 s",
    ]


async def test_the_smallest_worker_context_is_the_context(horde: HordeState) -> None:
    horde.workers.append(HordeWorker("Small", [MODEL], max_context_length=1024, id="w3"))
    async with gateway(horde) as gw:
        shown = await gw.preview(model=f"horde/{MODEL}", messages=said("Hi"), max_tokens=50)
    assert shown["body"]["params"]["max_context_length"] == 1024
    assert shown["prompt"]["context_size"] == 1024


async def test_stop_strings_are_cut_from_the_text(horde: HordeState) -> None:
    async with gateway(horde) as gw:
        answer = await gw.chat(
            model=f"horde/{MODEL}", messages=said("Say one two three four"), stop=[" three"]
        )
    # The Horde keeps the stop string (the fake answers "Say one two three").
    assert answer.choices[0].message.content == "Say one two"
    assert horde.last("/generate/text/async").body["params"]["stop_sequence"] == [" three"]


async def test_a_faulted_job_is_a_clear_error(horde: HordeState) -> None:
    horde.polls_to_finish = 2
    async with gateway(horde) as gw:
        with pytest.raises(UpstreamError) as caught:
            await gw.chat(model=f"horde/{MODEL}", messages=said("Go [[fault]]"))
    assert caught.value.status == 502
    assert caught.value.code == "upstream_job_faulted"
    assert '"faulted": true' in caught.value.message
    assert "connection 'horde'" in caught.value.message


async def test_an_impossible_job_is_a_clear_error(horde: HordeState) -> None:
    async with gateway(horde) as gw:
        with pytest.raises(UpstreamError) as caught:
            await gw.chat(model="horde/nobody/serves-this", messages=said("Hi"), max_tokens=64)
        assert caught.value.code == "upstream_job_impossible"
        assert '"is_possible": false' in caught.value.message
        assert "'nobody/serves-this'" in caught.value.message
        # Too long for the one worker of that model (256 tokens at most).
        with pytest.raises(UpstreamError) as caught:
            await gw.chat(
                model="horde/aphrodite/Mistral-7B-Fake", messages=said("Hi"), max_tokens=400
            )
        assert "max_length 400" in caught.value.message
    assert len(horde.cancelled) == 2  # an impossible job is withdrawn, not left queued


async def test_an_abandoned_job_is_withdrawn(horde: HordeState) -> None:
    horde.polls_to_finish = 10_000
    async with gateway(horde) as gw:
        task = asyncio.create_task(gw.chat(model=f"horde/{MODEL}", messages=said("Hi")))
        for _ in range(2000):  # until the job is being polled (the fake counts)
            if len(polls(horde)) >= 2:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    submitted = [s for s in horde.seen if s.method == "DELETE"]
    assert len(submitted) == 1 and horde.cancelled == [submitted[0].path.rsplit("/", 1)[1]]
    assert submitted[0].headers["apikey"] == KEY


async def test_a_stream_is_answered_whole_as_chunks(horde: HordeState) -> None:
    async with gateway(horde) as gw:
        chunks = [
            chunk
            async for chunk in gw.stream(
                model=f"horde/{MODEL}",
                messages=said("Say one two three"),
                stream_options={"include_usage": True},
            )
        ]
    # While the job waits, each unfinished poll is a comment chunk: where it stands.
    waiting = [c.comment for c in chunks if c.comment is not None]
    assert waiting == [
        "AI Horde: queue position 1, about 4 s",
        "AI Horde: queue position 0, about 2 s",
    ]
    chunks = [c for c in chunks if c.comment is None]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Say one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert len(polls(horde)) == 3  # one job, polled to its end


async def test_a_stream_left_while_queued_withdraws_the_job(horde: HordeState) -> None:
    horde.polls_to_finish = 10_000
    async with gateway(horde) as gw:
        chunks = gw.stream(model=f"horde/{MODEL}", messages=said("Hi"))
        assert isinstance(chunks, AsyncGenerator)
        first = await anext(chunks)
        assert first.comment is not None and first.comment.startswith("AI Horde: queue")
        await chunks.aclose()  # the client left
    submitted = [s for s in horde.seen if s.method == "DELETE"]
    assert len(submitted) == 1 and horde.cancelled == [submitted[0].path.rsplit("/", 1)[1]]


async def test_the_anonymous_key_is_sent_without_one(horde: HordeState) -> None:
    async with gateway(horde, api_key=None) as gw:
        answer = await gw.chat(model=f"horde/{MODEL}", messages=said("Hi there"))
        shown = await gw.preview(model=f"horde/{MODEL}", messages=said("Hi"))
    assert answer.choices[0].message.content == "Hi there"
    assert horde.last("/generate/text/async").headers["apikey"] == "0000000000"
    # A credential header is masked by its name, even the public anonymous key.
    assert shown["headers"]["apikey"] == "000...0000"


async def test_a_bad_key_is_a_401_with_the_key_masked(horde: HordeState) -> None:
    async with gateway(horde, api_key=horde_server.BAD_KEY) as gw:
        with pytest.raises(AuthenticationError) as caught:
            await gw.chat(model=f"horde/{MODEL}", messages=said("Hi"))
    error = caught.value
    assert error.status == 401 and error.code == "upstream_unauthorized"
    assert "upstream answered 401: No user matching sent API Key" in error.message
    body = error.to_dict()
    assert body["error"]["type"] == "authentication_error"
    assert horde_server.BAD_KEY not in str(body)
    assert polls(horde) == []  # refused at the submit: nothing to poll or withdraw


async def test_the_preview_shows_the_prompt_and_the_queue(horde: HordeState) -> None:
    async with gateway(horde) as gw:
        shown = await gw.preview(model=f"horde/{MODEL}", messages=said("Say hi"), max_tokens=2000)
    assert shown["url"].endswith("/api/v2/generate/text/async")
    assert shown["prompt"]["text"] == shown["body"]["prompt"]
    assert shown["prompt"]["text"].endswith("Say hi\n")
    note = shown["prompt"]["note"]
    assert f"AI Horde: 1 worker serve '{MODEL}'; 0 jobs (0 tokens) queued" in note
    assert "estimated wait 5 s" in note
    assert shown["body"]["params"]["max_length"] == 512
    assert "2000 tokens asked; AI Horde takes 16-512" in shown["prompt"]["max_length"]
    assert shown["headers"]["apikey"] != KEY and KEY not in str(shown)
    assert not [s for s in horde.seen if s.path.endswith("/async")]  # nothing was sent


async def test_models_and_status(horde: HordeState) -> None:
    async with gateway(horde) as gw:
        report = await gw.backend("horde").list_models()
        status = await gw.backend("horde").check_status()
    assert report["upstream"] == ["aphrodite/Mistral-7B-Fake", "faulty-model", MODEL]
    assert status["status"] == "ok"
    assert horde.last("/status/models?type=text").headers["apikey"] == KEY


# --- a Horde that lies about its answer -----------------------------------------------


def lying_app(status: dict[str, Any]) -> Starlette:
    async def submit(request: Request) -> Response:
        return json_response({"id": "job-1", "kudos": 1}, 202)

    async def poll(request: Request) -> Response:
        return json_response(status)

    async def models(request: Request) -> Response:
        return json_response([])

    return Starlette(
        routes=[
            Route("/api/v2/generate/text/async", submit, methods=["POST"]),
            Route("/api/v2/generate/text/status/{id}", poll, methods=["GET", "DELETE"]),
            Route("/api/v2/status/models", models, methods=["GET"]),
            Route("/api/v2/workers", models, methods=["GET"]),
        ]
    )


@pytest.mark.parametrize(
    ("status", "what"),
    [
        ({"done": "yes"}, "'done' is a string where true or false belongs"),
        ({"done": True, "generations": [{"text": 5}]}, "'text' is a number"),
        ({"done": True, "generations": []}, "sent no generations"),
        ({"done": True, "generations": "text"}, "'generations' is a string"),
    ],
)
async def test_a_lying_status_is_a_502(status: dict[str, Any], what: str) -> None:
    runner = cast(Generator[str, None, None], serve(lying_app(status)))
    url = next(runner)
    try:
        conn = Connection(
            name="liar",
            source="horde",
            base_url=url + "/api/v2",
            text=TextOptions(poll_interval=FAST, context_size=2048, instruct_template="chatml"),
        )
        async with Gateway(Settings(connections=[conn], embedded=False)) as gw:
            with pytest.raises(UpstreamError) as caught:
                await gw.chat(model="liar/m", messages=said("Hi"))
    finally:
        runner.close()
    assert caught.value.status == 502 and caught.value.code == "bad_upstream_response"
    assert what in caught.value.message
