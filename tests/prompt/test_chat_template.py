"""Jinja chat templates render as Hugging Face renders them, inside a sandbox."""

from __future__ import annotations

import pytest

from chatgate.prompt.chat_template import ChatTemplateError, render_chat_template

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_chatml_with_generation_prompt() -> None:
    out = render_chat_template(CHATML, [{"role": "user", "content": "Hi"}])
    assert out == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_without_generation_prompt() -> None:
    out = render_chat_template(
        CHATML, [{"role": "user", "content": "Hi"}], add_generation_prompt=False
    )
    assert out.endswith("<|im_end|>\n")


def test_special_tokens_and_extra_variables() -> None:
    src = "{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}{{ flavour }}"
    out = render_chat_template(
        src,
        [{"role": "user", "content": "x"}],
        bos_token="<s>",
        eos_token="</s>",
        extra={"flavour": "!"},
    )
    assert out == "<s>x</s>!"


def test_tojson_does_not_escape_html() -> None:
    out = render_chat_template("{{ tools | tojson }}", [], extra={"tools": [{"a": "<b>"}]})
    assert out == '[{"a": "<b>"}]'


def test_raise_exception_becomes_a_400() -> None:
    src = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
    with pytest.raises(ChatTemplateError, match="no system") as caught:
        render_chat_template(src, [{"role": "system", "content": "x"}])
    assert caught.value.status == 400


def test_sandbox_blocks_python_internals() -> None:
    with pytest.raises(ChatTemplateError):
        render_chat_template("{{ messages.__class__.__mro__[1].__subclasses__() }}", [])


def test_broken_template_is_reported() -> None:
    with pytest.raises(ChatTemplateError, match="does not compile"):
        render_chat_template("{% for %}", [])


def test_loopcontrols_are_available() -> None:
    src = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m }}{% endfor %}"
    assert render_chat_template(src, ["a", "b"]) == "a"  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ 1 + 'a' }}", "TypeError"),
        ("{% for i in range(10**9) %}{% endfor %}", "OverflowError"),  # the sandbox's range cap
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError"),
        ("{{ strftime_now(1) }}", "TypeError"),
    ],
)
def test_any_failure_inside_a_template_is_a_400(source: str, kind: str) -> None:
    # Not a 500: the template is the client's code, so are its failures.
    with pytest.raises(ChatTemplateError, match=kind) as caught:
        render_chat_template(source, [], param="chat_template")
    assert caught.value.status == 400 and caught.value.param == "chat_template"


def test_output_beyond_max_chars_is_refused() -> None:
    src = "{% for i in range(1000) %}xxxxxxxxxx{% endfor %}"
    assert len(render_chat_template(src, [], max_chars=10_000)) == 10_000
    with pytest.raises(ChatTemplateError, match="more than 9,999 characters") as caught:
        render_chat_template(src, [], max_chars=9_999, param="chat_template")
    assert caught.value.param == "chat_template"


def test_error_messages_are_clipped() -> None:
    with pytest.raises(ChatTemplateError) as caught:
        render_chat_template("{{ raise_exception('n' * 100000) }}", [])
    assert len(caught.value.message) < 1100
