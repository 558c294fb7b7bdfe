"""A request's own chat template renders in a child process that is killed when its time
is up: the 400 comes in time, the core is freed, the pool carries on."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chatgate.engine.client import WorkerClient
from chatgate.errors import InvalidRequestError
from chatgate.prompt import template_runner
from chatgate.prompt.chat_template import ChatTemplateError, render_chat_template
from chatgate.prompt.template_runner import (
    MAX_INPUT_BYTES,
    MAX_TEMPLATE_CHARS,
    TEMPLATE_SECONDS,
    TemplateRunner,
)
from chatgate.types import ChatRequest, Message

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
RUNAWAY = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
TOKENS = "{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}{{ flavour }}"
LOOPCONTROLS = (
    "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m }}{% endfor %}"
)
HI = [{"role": "user", "content": "Hi"}]
MARGIN = 1.5  # seconds allowed beyond the limit on a loaded machine


@pytest.fixture(scope="module")
def runner() -> Iterator[TemplateRunner]:
    pool = TemplateRunner()
    yield pool
    pool.close()


def gone(pid: int, within: float = 2.0) -> bool:
    """Whether process *pid* has exited (and been reaped) within *within* seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False


def test_nothing_starts_before_the_first_render() -> None:
    pool = TemplateRunner()
    try:
        assert pool.pids() == []
        assert pool.render_blocking(CHATML, HI).startswith("<|im_start|>user")
        assert len(pool.pids()) == 1  # one warm child is enough for renders one at a time
    finally:
        pool.close()
    assert pool.pids() == []


@pytest.mark.parametrize(
    ("source", "messages", "extra"),
    [
        (CHATML, HI, None),
        (TOKENS, HI, {"flavour": "!"}),
        ("{{ tools | tojson }}", [], {"tools": [{"a": "<b>"}]}),
        (LOOPCONTROLS, HI * 3, None),
        ("{{ strftime_now('%Y') | length }}", [], None),
        ("{{ '\\u00e9\\U0001f600' }}", [], None),
    ],
)  # fmt: skip
def test_renders_as_the_in_process_renderer(
    runner: TemplateRunner, source: str, messages: list[Any], extra: dict[str, Any] | None
) -> None:
    kwargs: dict[str, Any] = {"bos_token": "<s>", "eos_token": "</s>", "extra": extra}
    expected = render_chat_template(source, messages, **kwargs)
    assert runner.render_blocking(source, messages, **kwargs) == expected
    for add in (True, False):
        local = render_chat_template(CHATML, messages, add_generation_prompt=add)
        assert runner.render_blocking(CHATML, messages, add_generation_prompt=add) == local


def test_template_errors_keep_their_message_and_param(runner: TemplateRunner) -> None:
    src = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
    with pytest.raises(ChatTemplateError) as caught:
        runner.render_blocking(src, [{"role": "system", "content": "x"}], param="chat_template")
    assert caught.value.message == "the model's chat template refused the request: no system"
    assert caught.value.param == "chat_template" and caught.value.status == 400
    with pytest.raises(ChatTemplateError, match="does not compile"):
        runner.render_blocking("{% for %}", [], param="chat_template")
    with pytest.raises(ChatTemplateError, match="ZeroDivisionError"):
        runner.render_blocking("{{ 1 / 0 }}", [])


def test_a_runaway_template_gets_its_400_and_its_child_is_killed() -> None:
    pool = TemplateRunner(size=1)  # its own pool: exactly one child to watch
    try:
        pool.render_blocking(CHATML, HI)
        (before,) = pool.pids()
        started = time.monotonic()
        with pytest.raises(InvalidRequestError) as caught:
            pool.render_blocking(RUNAWAY, HI, param="chat_template")
        elapsed = time.monotonic() - started
        assert TEMPLATE_SECONDS <= elapsed < TEMPLATE_SECONDS + MARGIN
        # The same 400 as the thread-based renderer gave, code and all.
        assert type(caught.value) is InvalidRequestError and caught.value.status == 400
        expected = f"chat_template took longer than {TEMPLATE_SECONDS:g} s to render"
        assert caught.value.message == expected
        assert caught.value.param == "chat_template" and caught.value.code is None
        assert gone(before)  # the core is free: the process that spun is no more
        assert pool.pids() == []
        assert pool.render_blocking(CHATML, HI).endswith("assistant\n")  # a new one serves
        (after,) = pool.pids()
        assert after != before
    finally:
        pool.close()


def test_a_memory_bomb_is_refused(runner: TemplateRunner) -> None:
    with pytest.raises(ChatTemplateError, match="MemoryError"):
        runner.render_blocking("{{ 'a' * 10**10 }}", [])  # one 10 GB string: RLIMIT_AS
    loops = "{% for i in range(99999) %}{% for j in range(99999) %}xxxxxxxx{% endfor %}{% endfor %}"
    with pytest.raises(ChatTemplateError, match="rendered more than"):
        runner.render_blocking(loops, [])  # 80 GB in pieces: stopped at MAX_OUTPUT_CHARS
    assert runner.render_blocking(CHATML, HI).endswith("assistant\n")


def test_oversized_input_is_refused_before_any_child_sees_it(runner: TemplateRunner) -> None:
    with pytest.raises(ChatTemplateError, match="longer than") as caught:
        runner.render_blocking("x" * (MAX_TEMPLATE_CHARS + 1), [], param="chat_template")
    assert caught.value.param == "chat_template"
    huge = [{"role": "user", "content": "y" * (MAX_INPUT_BYTES + 1)}]
    with pytest.raises(ChatTemplateError, match="bytes"):
        runner.render_blocking(CHATML, huge, param="chat_template")


def test_the_pool_survives_a_child_killed_from_outside(runner: TemplateRunner) -> None:
    runner.render_blocking(CHATML, HI)
    victims = runner.pids()
    for victim in victims:
        os.kill(victim, signal.SIGKILL)
    assert victims and all(gone(victim) for victim in victims)
    assert runner.render_blocking(CHATML, HI).endswith("assistant\n")
    assert runner.pids() and not set(victims) & set(runner.pids())


async def test_concurrent_renders_each_get_their_own_answer(runner: TemplateRunner) -> None:
    async def one(i: int) -> str:
        return await runner.render("{{ messages[0].content }}", [{"role": "user", "content": i}])

    assert await asyncio.gather(*(one(i) for i in range(16))) == [str(i) for i in range(16)]


async def test_the_event_loop_runs_while_a_runaway_spins(runner: TemplateRunner) -> None:
    lags: list[float] = []

    async def tick() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    ticker = asyncio.create_task(tick())
    runaway = asyncio.create_task(runner.render(RUNAWAY, HI))
    await asyncio.sleep(0.2)
    assert await runner.render(CHATML, HI) != ""  # the other child answers meanwhile
    with pytest.raises(InvalidRequestError, match="took longer"):
        await runaway
    ticker.cancel()
    assert len(lags) > 50 and max(lags) < 0.5


async def test_the_engine_client_renders_through_the_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def props(self: WorkerClient) -> dict[str, Any]:
        return {"bos_token": "<s>", "eos_token": "</s>"}

    monkeypatch.setattr(WorkerClient, "model_props", props)
    client = WorkerClient.__new__(WorkerClient)  # prompt() needs only model_props here

    def ask(template: str) -> ChatRequest:
        hi = Message(role="user", content="Hi")
        return ChatRequest(model="m", messages=[hi], chat_template=template)

    try:
        assert await client.prompt(ask("{{ bos_token }}{{ messages[0].content }}")) == "<s>Hi"
        with pytest.raises(InvalidRequestError, match="empty prompt"):
            await client.prompt(ask("{{ '' }}"))
        with pytest.raises(ChatTemplateError) as caught:
            await client.prompt(ask("{% for %}"))
        assert caught.value.param == "chat_template"
    finally:
        template_runner.default_runner().close()
