"""Pytest fixtures for the text-completion fakes: one server per fake and test module,
its state reset to the defaults for every test (as ``tests/conftest.py``'s ``fake``).

Expose them from a conftest with ``from tests.fakes.text_conftest import *``; the
fixtures are listed in ``__all__``.

- ``kobold_fake`` (KoboldCpp), ``koboldai_fake`` (KoboldAI Classic: ``classic=True``);
- ``llamacpp_fake``, ``ollama_fake``, ``horde_fake``, ``novelai_fake``;
- ``text_openai_fake``: the OpenAI-style text server, flavour ``generic``;
  ``text_openai_fake_for``: a function of a flavour name (``textgen``, ``tabby``,
  ``vllm``, ``aphrodite``, ``mancer``, ``dreamgen``, ``generic``) that resets the same
  server to that flavour and returns its state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from starlette.applications import Starlette

from tests.fakes import (
    horde_server,
    kobold_server,
    llamacpp_server,
    novelai_server,
    ollama_server,
    text_openai_server,
)
from tests.fakes.common import FakeState, reset_state
from tests.fakes.openai_server import serve

__all__ = [
    "horde_fake",
    "horde_fake_server",
    "kobold_fake",
    "kobold_fake_server",
    "koboldai_fake",
    "koboldai_fake_server",
    "llamacpp_fake",
    "llamacpp_fake_server",
    "novelai_fake",
    "novelai_fake_server",
    "ollama_fake",
    "ollama_fake_server",
    "text_openai_fake",
    "text_openai_fake_for",
    "text_openai_fake_server",
]

S = TypeVar("S", bound=FakeState)


def running(state: S, build: Callable[[S], Starlette]) -> Iterator[S]:
    """*state*'s fake served on loopback, its URL set, until the caller is done."""
    for url in serve(build(state)):
        state.url = url
        yield state


def fresh(state: S, **knobs: Any) -> S:
    """*state* reset to its defaults, then *knobs* set."""
    reset_state(state)
    for name, value in knobs.items():
        setattr(state, name, value)
    return state


@pytest.fixture(scope="module")
def kobold_fake_server() -> Iterator[kobold_server.KoboldState]:
    yield from running(kobold_server.KoboldState(), kobold_server.build_app)


@pytest.fixture()
def kobold_fake(kobold_fake_server: kobold_server.KoboldState) -> kobold_server.KoboldState:
    """A fake KoboldCpp, reset for this test."""
    return fresh(kobold_fake_server)


@pytest.fixture(scope="module")
def koboldai_fake_server() -> Iterator[kobold_server.KoboldState]:
    yield from running(kobold_server.KoboldState(classic=True), kobold_server.build_app)


@pytest.fixture()
def koboldai_fake(koboldai_fake_server: kobold_server.KoboldState) -> kobold_server.KoboldState:
    """A fake KoboldAI Classic (no ``/api/extra``), reset for this test."""
    return fresh(koboldai_fake_server, classic=True)


@pytest.fixture(scope="module")
def llamacpp_fake_server() -> Iterator[llamacpp_server.LlamaCppState]:
    yield from running(llamacpp_server.LlamaCppState(), llamacpp_server.build_app)


@pytest.fixture()
def llamacpp_fake(
    llamacpp_fake_server: llamacpp_server.LlamaCppState,
) -> llamacpp_server.LlamaCppState:
    """A fake llama-server, reset for this test."""
    return fresh(llamacpp_fake_server)


@pytest.fixture(scope="module")
def ollama_fake_server() -> Iterator[ollama_server.OllamaState]:
    yield from running(ollama_server.OllamaState(), ollama_server.build_app)


@pytest.fixture()
def ollama_fake(ollama_fake_server: ollama_server.OllamaState) -> ollama_server.OllamaState:
    """A fake Ollama, reset for this test."""
    return fresh(ollama_fake_server)


@pytest.fixture(scope="module")
def text_openai_fake_server() -> Iterator[text_openai_server.TextOpenAIState]:
    yield from running(text_openai_server.TextOpenAIState(), text_openai_server.build_app)


@pytest.fixture()
def text_openai_fake(
    text_openai_fake_server: text_openai_server.TextOpenAIState,
) -> text_openai_server.TextOpenAIState:
    """The fake OpenAI-style text server, flavour ``generic``, reset for this test."""
    return fresh(text_openai_fake_server)


@pytest.fixture()
def text_openai_fake_for(
    text_openai_fake_server: text_openai_server.TextOpenAIState,
) -> Callable[[str], text_openai_server.TextOpenAIState]:
    """A function of a flavour name: the text server reset to that flavour."""

    def flavoured(flavour: str) -> text_openai_server.TextOpenAIState:
        if flavour not in text_openai_server.FLAVOURS:
            raise ValueError(
                f"no flavour {flavour!r}; known: {sorted(text_openai_server.FLAVOURS)}"
            )
        return fresh(text_openai_fake_server, flavour=flavour)

    return flavoured


@pytest.fixture(scope="module")
def horde_fake_server() -> Iterator[horde_server.HordeState]:
    yield from running(horde_server.HordeState(), horde_server.build_app)


@pytest.fixture()
def horde_fake(horde_fake_server: horde_server.HordeState) -> horde_server.HordeState:
    """A fake AI Horde, reset for this test."""
    return fresh(horde_fake_server)


@pytest.fixture(scope="module")
def novelai_fake_server() -> Iterator[novelai_server.NovelAIState]:
    yield from running(novelai_server.NovelAIState(), novelai_server.build_app)


@pytest.fixture()
def novelai_fake(novelai_fake_server: novelai_server.NovelAIState) -> novelai_server.NovelAIState:
    """A fake NovelAI, reset for this test."""
    return fresh(novelai_fake_server)
