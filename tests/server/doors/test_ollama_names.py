"""Ollama names ↔ chatgate's model ids: the table of cases, the round trip as a
property, and the catalogue a real gateway gives."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatgate.config import Connection, DoorOptions, Settings
from chatgate.errors import ModelNotFoundError
from chatgate.gateway import Gateway
from chatgate.server.doors.ollama_names import (
    Catalogue,
    catalogue,
    display_name,
    listed_name,
    model_id_for,
    resolve,
)

IDS = (
    "local/smollm2-135m-instruct",
    "ol/llama3:8b",
    "ol/llama3.2:latest",
    "ol/hf.co/bartowski/Qwen2.5-Coder:Q4_K_M",
    "or/meta-llama/llama-3-8b:free",
    "or/mistralai/mistral-7b",
    "claude/claude-fake-1",
    "a/twin",
    "b/twin",
    "c/dup",
    "c/dup:latest",
)
ROUTES = frozenset({"local", "ol", "or", "claude", "a", "b", "c", "az@eu"})
CLOSED = frozenset({"local"})
PLAIN = Catalogue(IDS, ROUTES, CLOSED)
HOME_OL = Catalogue(IDS, ROUTES, CLOSED, default_connection="ol")
HOME_LOCAL = Catalogue(IDS, ROUTES, CLOSED, "local", "claude/claude-fake-1")
FALLBACK = Catalogue(IDS, ROUTES, CLOSED, default_model="local/smollm2-135m-instruct")


@pytest.mark.parametrize(
    ("name", "cat", "expected"),
    [
        # Exact ids, and the ":latest" a client adds or leaves off.
        ("local/smollm2-135m-instruct", PLAIN, "local/smollm2-135m-instruct"),
        ("local/smollm2-135m-instruct:latest", PLAIN, "local/smollm2-135m-instruct"),
        ("LOCAL/SmolLM2-135m-Instruct:latest", PLAIN, "local/smollm2-135m-instruct"),
        ("ol/llama3:8b", PLAIN, "ol/llama3:8b"),  # a ':' in the id stays exact
        ("ol/llama3.2", PLAIN, "ol/llama3.2:latest"),  # no tag means :latest, as in Ollama
        ("ol/llama3.2:latest", PLAIN, "ol/llama3.2:latest"),
        (
            "ol/hf.co/bartowski/Qwen2.5-Coder:Q4_K_M",
            PLAIN,
            "ol/hf.co/bartowski/Qwen2.5-Coder:Q4_K_M",
        ),
        ("or/meta-llama/llama-3-8b:free", PLAIN, "or/meta-llama/llama-3-8b:free"),
        ("or/mistralai/mistral-7b:latest", PLAIN, "or/mistralai/mistral-7b"),
        ("c/dup", PLAIN, "c/dup"),
        ("c/dup:latest", PLAIN, "c/dup:latest"),
        # A connection's model that is not listed: open connections take any name.
        ("claude/claude-opus-9:latest", PLAIN, "claude/claude-opus-9"),
        ("ol/qwen3:0.6b", PLAIN, "ol/qwen3:0.6b"),
        ("az@eu/gpt-4o", PLAIN, "az@eu/gpt-4o"),
        ("local/other", PLAIN, None),  # the embedded engine serves its one model
        # Bare names: a unique model name, the default connection, the default model.
        ("smollm2-135m-instruct", PLAIN, "local/smollm2-135m-instruct"),
        ("smollm2-135m-instruct:latest", PLAIN, "local/smollm2-135m-instruct"),
        ("llama3:8b", PLAIN, "ol/llama3:8b"),
        ("llama3.2", PLAIN, "ol/llama3.2:latest"),
        ("meta-llama/llama-3-8b:free", PLAIN, "or/meta-llama/llama-3-8b:free"),
        ("hf.co/bartowski/Qwen2.5-Coder:Q4_K_M", PLAIN, "ol/hf.co/bartowski/Qwen2.5-Coder:Q4_K_M"),
        ("nothing-like-it", PLAIN, None),
        ("qwen3:0.6b", HOME_OL, "ol/qwen3:0.6b"),
        ("library/qwen3:latest", HOME_OL, "ol/library/qwen3"),
        ("llama3.2", HOME_OL, "ol/llama3.2:latest"),
        ("smollm2-135m-instruct", HOME_OL, "ol/smollm2-135m-instruct"),  # the home wins
        ("smollm2-135m-instruct:latest", HOME_LOCAL, "local/smollm2-135m-instruct"),
        ("qwen3", HOME_LOCAL, "claude/claude-fake-1"),  # not on the closed home: the default
        ("mistral-7b", FALLBACK, "local/smollm2-135m-instruct"),
        ("nothing-like-it", FALLBACK, "local/smollm2-135m-instruct"),
        ("twin", FALLBACK, "error"),  # ambiguous: never guessed
        ("", PLAIN, None),
    ],
)
def test_names_resolve(name: str, cat: Catalogue, expected: str | None) -> None:
    if expected == "error":
        with pytest.raises(ModelNotFoundError, match="ambiguous: a/twin, b/twin"):
            resolve(name, cat)
        return
    assert (resolve(name, cat) if name else None) == expected


@pytest.mark.parametrize(
    ("model_id", "listed"),
    [
        ("local/smollm2-135m-instruct", "local/smollm2-135m-instruct:latest"),
        ("ol/llama3:8b", "ol/llama3:8b"),
        ("or/meta-llama/llama-3-8b:free", "or/meta-llama/llama-3-8b:free"),
        ("x/a:b/c", "x/a:b/c:latest"),  # only the last segment's tag counts
        ("c/dup", "c/dup"),  # its ':latest' form is another model
        ("c/dup:latest", "c/dup:latest"),
    ],
)
def test_listed_names(model_id: str, listed: str) -> None:
    assert listed_name(model_id, IDS) == listed
    assert resolve(listed, PLAIN if model_id in IDS else Catalogue((model_id,))) == model_id


SEGMENT = st.text(alphabet="abcXYZ019.-_", min_size=1, max_size=6)
MODEL = st.builds(
    lambda parts, tag: "/".join(parts) + (f":{tag}" if tag else ""),
    st.lists(SEGMENT, min_size=1, max_size=3),
    st.one_of(st.none(), st.just("latest"), SEGMENT),
)
MODEL_IDS = st.lists(
    st.builds(lambda c, m: f"{c}/{m}", st.sampled_from(["local", "ol", "or", "c@d"]), MODEL),
    min_size=1,
    max_size=8,
    unique_by=str.casefold,
)


@given(ids=MODEL_IDS, home=st.sampled_from([None, "ol"]))
def test_every_listed_name_comes_back_to_its_id(ids: list[str], home: str | None) -> None:
    cat = Catalogue(tuple(ids), frozenset({"local", "ol", "or", "c@d"}), default_connection=home)
    for model_id in ids:
        listed = listed_name(model_id, ids)
        assert resolve(listed, cat) == model_id
        assert resolve(model_id, cat) == model_id
        if listed.endswith(":latest") and listed != model_id:
            # A client that drops the tag again reaches the same model.
            assert resolve(listed.removesuffix(":latest"), cat) == model_id


@given(model=MODEL)
def test_display_names_have_a_tag(model: str) -> None:
    name = display_name(f"c/{model}")
    assert ":" in name.rpartition("/")[2] and name in (f"c/{model}", f"c/{model}:latest")


def test_a_gateway_s_catalogue_follows_the_door_s_config() -> None:
    settings = Settings(
        connections=[
            Connection(name="local", source="local"),
            Connection(name="a", source="custom", base_url="http://127.0.0.1:9/v1", models=["m"]),
            Connection(name="b", source="custom", base_url="http://127.0.0.1:9/v1", models=["n"]),
        ],
        doors={"ollama": DoorOptions(connections=["a", "local"], default_connection="a")},
    )
    gateway = Gateway(settings)
    cat = catalogue(gateway)
    assert set(cat.ids) == {"a/m", "local/smollm2-135m-instruct"}  # b is out of reach
    assert "local" in cat.closed and "a" not in cat.closed
    assert model_id_for("m:latest", gateway) == "a/m"
    assert model_id_for("anything", gateway) == "a/anything"
    assert model_id_for("smollm2-135m-instruct:latest", gateway) == "a/smollm2-135m-instruct"
    with pytest.raises(ModelNotFoundError, match="model 'local/x' not found"):
        model_id_for("local/x", gateway)
