"""Settings from TOML and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from chatgate.config import DEFAULT_PORT, Connection, load_settings
from chatgate.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chatgate.toml"
    path.write_text(text)
    return path


def test_defaults_give_the_embedded_model() -> None:
    settings = load_settings(env={})
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == DEFAULT_PORT
    assert [c.name for c in settings.connections] == ["local"]
    assert settings.default_model == "local/smollm2-135m-instruct"


def test_file_then_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
default_model = "mine/smol"
[server]
host = "0.0.0.0"
port = 9000
api_keys = ["k1"]

[[connections]]
name = "mine"
source = "local"
model_alias = "smol"
model_path = "/models/x.gguf"
parallel = 2
""",
    )
    env = {"CHATGATE_PORT": "9100", "CHATGATE_API_KEYS": "k2, k3"}
    settings = load_settings(path, env=env)
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 9100
    assert settings.server.api_keys == ["k1", "k2", "k3"]
    assert [c.name for c in settings.connections] == ["mine"]
    assert settings.connections[0].engine.parallel == 2
    assert settings.default_model == "mine/smol"


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9999\n")
    assert load_settings(env={"CHATGATE_CONFIG": str(path)}).server.port == 9999


def test_api_keys_env(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\napi_keys_env = "MY_KEYS"\n')
    settings = load_settings(path, env={})
    assert settings.server.resolved_keys({"MY_KEYS": "a,b"}) == ["a", "b"]


def test_model_path_from_environment() -> None:
    settings = load_settings(env={"CHATGATE_MODEL_PATH": "/m/other.gguf"})
    assert settings.connections[0].engine.model_path == "/m/other.gguf"


def test_embedded_can_be_turned_off(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "embedded = false\n"), env={}).connections == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server\n", "not valid TOML"),
        ("[server]\nport = 'x'\n", "server.port"),
        ("[server]\nbogus = 1\n", "server.bogus"),
        (
            "[[connections]]\nname = 'a'\nsource = 'local'\n[[connections]]\nname = 'a'\n"
            "source = 'local'\n",
            "two connections are named 'a'",
        ),
        ("[[connections]]\nname = 'a b'\nsource = 'local'\n", "connections.0.name"),
    ],
)
def test_bad_files_are_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(write(tmp_path, text), env={})
    assert "\n" not in caught.value.message


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings("/nonexistent/chatgate.toml", env={})


def test_bad_port_variable() -> None:
    with pytest.raises(ConfigError, match="CHATGATE_PORT"):
        load_settings(env={"CHATGATE_PORT": "eighty"})


def test_connection_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
embedded = false
[[connections]]
name = "router"
source = "openrouter"
api_key_env = "OR_KEY"
headers = { "X-Title" = "my app" }
extra_body = { transforms = ["middle-out"] }
exclude_params = ["seed"]
models = ["anthropic/claude-sonnet-4"]
bypass_status_check = true
post_processing = "strict-tools"
timeout = 30
""",
    )
    conn = load_settings(path, env={}).connections[0]
    assert conn.key({"OR_KEY": "sk-or-1"}) == "sk-or-1"
    assert conn.headers == {"X-Title": "my app"}
    assert conn.extra_body == {"transforms": ["middle-out"]}
    assert conn.exclude_params == ["seed"]
    assert conn.post_processing == "strict-tools"
    assert conn.timeout == 30


def test_unknown_post_processing_mode(tmp_path: Path) -> None:
    path = write(tmp_path, "[[connections]]\nname='a'\nsource='custom'\npost_processing='loose'\n")
    with pytest.raises(ConfigError, match=r"connections\.0\.post_processing"):
        load_settings(path, env={})


def test_a_password_in_a_url_is_a_secret() -> None:
    conn = Connection(
        name="p",
        source="custom",
        base_url="https://me:hunter2-long-password@proxy.example/v1",
        deployments={"eu": "https://me:other-long-password@eu.example/v1"},
    )
    found = conn.secrets({})
    assert "hunter2-long-password" in found and "other-long-password" in found


def test_a_key_read_from_a_file_loses_its_newline() -> None:
    conn = Connection(name="k", source="custom", api_key="sk-abc123456789\n")
    assert conn.key({}) == "sk-abc123456789"
    from_env = Connection(name="e", source="custom", api_key_env="MY_KEY")
    assert from_env.key({"MY_KEY": " sk-xyz987654321\r\n"}) == "sk-xyz987654321"
    assert from_env.key({"MY_KEY": "\n"}) is None


def test_backend_options_flat_or_as_their_own_table(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[[connections]]\nname = "g"\nsource = "vertexai"\napi_key = "k"\nregion = "us-east5"\n'
        '[[connections]]\nname = "e"\nsource = "local"\n[connections.engine]\nparallel = 3\n'
    )
    google, engine = load_settings(config, env={}).connections
    assert google.google.region == "us-east5" and google.google.project is None
    assert engine.engine.parallel == 3 and engine.engine.context_size == 2048


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"source": "openai", "threads": 2}, "threads"),
        ({"source": "local", "region": "x"}, "region"),
    ],
)
def test_an_option_of_another_kind_of_backend_is_refused(
    fields: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Connection(name="c", **fields)  # type: ignore[arg-type]
    assert named in str(caught.value) and "option of the" in str(caught.value)


def test_the_store_url_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('store_url = "sqlite:///x.db"\n')
    assert load_settings(path, env={}).store_url == "sqlite:///x.db"
    env = {"CHATGATE_STORE_URL": "postgresql://gate:pa%24s@db/gate"}
    settings = load_settings(path, env=env)
    assert settings.store_url == env["CHATGATE_STORE_URL"]
    # Its password is a secret: redaction knows it, quoted and plain.
    assert {"pa%24s", "pa$s"} <= set(settings.secrets())


def test_redis_retries_and_fallbacks_are_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'embedded = false\nretries = 2\nredis_url = "redis://:hunter2@cache:6379/0"\n'
        '[[connections]]\nname = "a"\nsource = "openai"\nretries = 4\n'
        '[[connections]]\nname = "b"\nsource = "claude"\n'
        '[fallbacks]\n"a/gpt-4o" = ["b/claude-sonnet-4"]\n'
    )
    settings = load_settings(path, env={})
    assert settings.retries == 2 and settings.connections[0].retries == 4
    assert settings.connections[1].retries is None
    assert settings.fallbacks == {"a/gpt-4o": ["b/claude-sonnet-4"]}
    assert "hunter2" in settings.secrets()
    assert load_settings(path, env={"CHATGATE_REDIS_URL": "redis://r/1"}).redis_url == (
        "redis://r/1"
    )
    path.write_text(
        'embedded = false\n[[connections]]\nname = "a"\nsource = "openai"\n'
        '[fallbacks]\n"a/gpt-4o" = ["zzz/m"]\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert "'zzz/m'" in caught.value.message
