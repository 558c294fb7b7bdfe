"""Property tests of the Jinja path: any template text and any messages give a string or
a `ChatTemplateError` (a 400), never another exception and never a hang.

Most examples use the in-process renderer, small, for speed; a few go through the
process runner. The vocabulary below leaves out what could hang the test process
itself (``**``, large numbers): in production those are the child's problem, and
`test_template_runner` shows the child is killed for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatgate.errors import InvalidRequestError
from chatgate.prompt.chat_template import ChatTemplateError, render_chat_template
from chatgate.prompt.template_runner import TemplateRunner

# Pieces of real chat templates, so that generated text often compiles and reaches the
# renderer instead of stopping at a syntax error.
FRAGMENTS = [
    "{{", "}}", "{%", "%}", "{#", "#}", "-", " ", "\n", "for", "m", "in", "messages",
    "endfor", "if", "elif", "else", "endif", "set", "=", "==", "!=", "not", "and", "or",
    "macro", "endmacro", "f()", "call", "break", "continue", "loop.index", "loop.last",
    "m['role']", "m.content", "m['content']", "messages[0]", "messages[-1]", "|", "tojson",
    "trim", "length", "upper", "join(', ')", "selectattr('role')", "list", "first",
    "raise_exception('no')", "raise_exception(m)", "strftime_now('%d %b')", "strftime_now(m)",
    "bos_token", "eos_token", "add_generation_prompt", "tools", "range(3)", "range(-1)",
    "'x'", '"y"', "1", "2", "0", "+", "*", "/", "//", "%", "~", "(", ")", "[", "]", ":",
    ",", ".", "__class__", "__mro__", "mro()", "items()", "none", "true", "undefined_x",
    "namespace(a=1)", "ns.a", "is defined", "is string", "{{ m }}",
]  # fmt: skip

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool"]), "content": JSON},
    optional={"name": st.text(max_size=5), "tool_calls": st.lists(JSON, max_size=2)},
)
MESSAGES = st.lists(MESSAGE | JSON, max_size=4)
TEMPLATES = st.lists(st.sampled_from(FRAGMENTS), max_size=16).map("".join)
EXTRA = st.none() | st.dictionaries(st.sampled_from(["tools", "ns", "flag"]), JSON, max_size=2)

# Explicit, generous deadlines: rendering a small template takes well under a
# millisecond, so only a real hang could reach them, even on a loaded machine.
FAST = settings(
    max_examples=120, deadline=timedelta(seconds=1), suppress_health_check=[HealthCheck.too_slow]
)


def outcome(source: str, messages: list[Any], extra: dict[str, Any] | None) -> str | None:
    """The rendered text, or None for a ChatTemplateError; anything else fails the test."""
    try:
        text = render_chat_template(source, messages, extra=extra, param="chat_template")
    except ChatTemplateError as exc:
        assert exc.status == 400 and exc.param == "chat_template" and exc.message
        return None
    assert isinstance(text, str)
    return text


@FAST
@given(source=st.text(max_size=60), messages=MESSAGES)
def test_any_text_is_a_string_or_a_400(source: str, messages: list[Any]) -> None:
    outcome(source, messages, None)


@FAST
@given(source=TEMPLATES, messages=MESSAGES, extra=EXTRA)
def test_any_jinja_shaped_template_is_a_string_or_a_400(
    source: str, messages: list[Any], extra: dict[str, Any] | None
) -> None:
    outcome(source, messages, extra)


@FAST
@given(source=TEMPLATES, prefix=st.text(max_size=10), suffix=st.text(max_size=10))
def test_templates_with_stray_text_around_them(source: str, prefix: str, suffix: str) -> None:
    outcome(prefix + source + suffix, [{"role": "user", "content": "Hi"}], None)


@pytest.fixture(scope="module")
def runner() -> Iterator[TemplateRunner]:
    pool = TemplateRunner(size=1, seconds=0.5)  # the hostile cases time out sooner
    yield pool
    pool.close()


@settings(
    max_examples=10,
    deadline=timedelta(seconds=5),  # the first example starts the child
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(source=TEMPLATES, messages=MESSAGES)
def test_the_process_runner_agrees_with_the_in_process_renderer(
    runner: TemplateRunner, source: str, messages: list[Any]
) -> None:
    local = outcome(source, messages, None)
    try:
        remote: str | None = runner.render_blocking(source, messages, param="chat_template")
    except ChatTemplateError as exc:
        assert exc.param == "chat_template"
        remote = None
    if "strftime_now" not in source:  # the clock may tick between the two renders
        assert remote == local


@pytest.mark.parametrize(
    "source",
    [
        "{{ 2**(2**(2**(2**(2**2)))) }}",  # folded as a constant at compile time: endless
        "{% set s = 'ab' * 99999 %}{% for c in s %}{{ s }}{% endfor %}",  # gigabytes of output
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",  # recursion
    ],
)
def test_hostile_templates_through_the_runner_are_400s(runner: TemplateRunner, source: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:  # a ChatTemplateError or the timeout
        runner.render_blocking(source, [], param="chat_template")
    assert caught.value.status == 400 and caught.value.param == "chat_template"
