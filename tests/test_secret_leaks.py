"""Issue 13: no secret in any answer, header, stream frame, log line or CLI output, even
when the upstream quotes it back.

Every route of a real server (and the CLI commands that show connections, status,
models, tests and previews) runs against `tests.fakes.echo_upstream`, which repeats the
credentials it is sent in each of its modes. Everything that comes back is searched for
each secret and for every 8-character run of it (what `chatgate.redaction` also treats
as a leak); the masked form ``sk-...wxyz`` shows 3 + 4 characters and passes, while a
prefix one character longer than it shows, or a suffix one longer, is a leak too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import random
import string
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chatgate.cli import main
from chatgate.cli_connections import run_connections, run_preview
from chatgate.config import load_settings
from chatgate.errors import ChatgateError
from chatgate.gateway import Gateway
from chatgate.redaction import FRAGMENT, redact
from tests.conftest import LiveServer, start_server
from tests.fakes import echo_upstream
from tests.fakes.echo_upstream import MODEL, MODES, TOKEN, EchoUpstream, Mode

# A fixed seed: the secrets are random-looking but the same on every run, so a chance
# collision with other text cannot make the test flaky.
_RANDOM = random.Random(13)
_ALPHABET = string.ascii_letters + string.digits


def _secret(prefix: str) -> str:
    return prefix + "".join(_RANDOM.choice(_ALPHABET) for _ in range(28))


SECRETS: dict[str, str] = {
    "api_key": _secret("sk-"),
    "api_key_env": _secret("ev-"),
    "proxy_password": _secret("pp-"),
    "url_password": _secret("up-"),
    "header_bearer": _secret("hb-"),
    "claude_key": _secret("ck-"),
    "google_key": _secret("AIza"),
    "cohere_key": _secret("co-"),
    "gateway_key_1": _secret("gw-"),
    "gateway_key_2": _secret("gx-"),
    "access_token": TOKEN,
}
KEY_ENV = "CHATGATE_LEAK_KEY"
ACCOUNT_ENV = "CHATGATE_LEAK_ACCOUNT"
CONNECTIONS = ("plain", "envkey", "proxied", "userinfo", "claude", "gemini", "vertex", "cohere")
# A wrong gateway key that differs from a real one in its last character only.
NEAR_MISS = SECRETS["gateway_key_1"][:-1] + ("A" if SECRETS["gateway_key_1"][-1] != "A" else "B")


@dataclass
class Leak:
    """One secret found: where, which, and the text around it."""

    where: str
    secret: str
    around: str


@dataclass
class Needles:
    """What counts as a leak: 8-character runs, and prefixes / suffixes longer than the
    masked form shows."""

    grams: dict[str, str] = field(default_factory=dict)
    edges: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, secret: str, edges: bool = True) -> None:
        """Every run of *secret* that would be a leak."""
        for i in range(len(secret) - FRAGMENT + 1):
            self.grams[secret[i : i + FRAGMENT]] = name
        if edges:
            self.edges[secret[:4]] = name  # masking shows 3
            self.edges[secret[-5:]] = name  # masking shows 4

    def search(self, where: str, text: str) -> list[Leak]:
        """Each leak in *text*."""
        found: list[Leak] = []
        for i in range(len(text) - FRAGMENT + 1):
            name = self.grams.get(text[i : i + FRAGMENT])
            if name is not None:
                found.append(Leak(where, name, text[max(0, i - 40) : i + 48]))
        for edge, name in self.edges.items():
            at = text.find(edge)
            if at >= 0:
                found.append(Leak(where, name, text[max(0, at - 40) : at + 48]))
        return found


@dataclass
class World:
    """The upstream, the server, and the config file the CLI reads."""

    echo: EchoUpstream
    server: LiveServer
    config: Path
    needles: Needles
    stats: dict[str, int] = field(default_factory=dict)


def _config(url: str, port: int) -> str:
    s = SECRETS
    keys = orjson.dumps([s["gateway_key_1"], s["gateway_key_2"]]).decode()
    rows = [
        ("plain", "custom", f"{url}/openai/v1", f'api_key = "{s["api_key"]}"'),
        ("envkey", "custom", f"{url}/openai/v1", f'api_key_env = "{KEY_ENV}"'),
        ("proxied", "openai", f"{url}/openai/v1", f'proxy_password = "{s["proxy_password"]}"'),
        ("userinfo", "custom", f"http://user:{s['url_password']}@127.0.0.1:{port}/openai/v1", ""),
        (
            "claude",
            "claude",
            f"{url}/claude/v1",
            f'api_key = "{s["claude_key"]}"\n'
            f'headers = {{ Authorization = "Bearer {s["header_bearer"]}" }}',
        ),
        ("gemini", "google", f"{url}/gemini/v1beta", f'api_key = "{s["google_key"]}"'),
        ("vertex", "vertexai", f"{url}/gemini/v1", f'service_account_json_env = "{ACCOUNT_ENV}"'),
        ("cohere", "cohere", f"{url}/cohere/x/v2", f'api_key = "{s["cohere_key"]}"'),
    ]
    tables = "".join(
        f'\n[[connections]]\nname = "{name}"\nsource = "{source}"\nbase_url = "{base}"\n'
        f'models = ["{MODEL}"]\n{extra}\n'
        for name, source, base, extra in rows
    )
    return f"embedded = false\n\n[server]\napi_keys = {keys}\n{tables}"


def _account(token_uri: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "leak-project",
        "private_key_id": "leak-key-1",
        "private_key": pem,
        "client_email": "leak@leak-project.iam.gserviceaccount.com",
        "token_uri": token_uri,
    }
    return orjson.dumps(account).decode(), pem


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The echo upstream, a server configured with every kind of secret, and its file."""
    with pytest.MonkeyPatch.context() as patch:
        for echo in echo_upstream.run():
            port = int(echo.url.rsplit(":", 1)[1])
            account, pem = _account(f"{echo.url}/token")
            patch.setenv(KEY_ENV, SECRETS["api_key_env"])
            patch.setenv(ACCOUNT_ENV, account)
            needles = Needles()
            for name, secret in SECRETS.items():
                needles.add(name, secret)
            basic = base64.b64encode(f"user:{SECRETS['url_password']}".encode()).decode()
            needles.add("url_password_base64", basic[8:], edges=False)
            # The key's base64 lines: its BEGIN/END armour is the same in every key.
            for line in pem.splitlines():
                if not line.startswith("-----"):
                    needles.add("private_key", line, edges=False)
            config = tmp_path_factory.mktemp("leaks") / "chatgate.toml"
            config.write_text(_config(echo.url, port))
            server, uvicorn_server, thread = start_server(load_settings(config))
            yield World(echo, server, config, needles)
            uvicorn_server.should_exit = True
            thread.join(timeout=10)


class Recorder:
    """Sends requests and keeps everything that came back, for the search."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.texts: list[tuple[str, str]] = []
        self.requests = 0
        # One client: making one costs tens of milliseconds (its TLS context).
        self.client = httpx.Client(base_url=world.server.url, timeout=30)

    def keep(self, where: str, response: httpx.Response) -> None:
        """The answer's status line, headers and body (every frame of a stream)."""
        head = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
        self.texts.append((where, f"{response.status_code}\n{head}\n\n{response.text}"))

    def send(self, method: str, path: str, key: str | None = "", **kwargs: object) -> None:
        """One request to the server with gateway key *key* (the first one by default)."""
        key = self.world.server.key if key == "" else key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        where = f"{self.world.echo.mode} {method} {path}"
        with self.client.stream(method, path, headers=headers, **kwargs) as response:  # type: ignore[arg-type]
            response.read()
        self.requests += 1
        self.keep(where, response)

    def leaks(self, *extra: tuple[str, str]) -> list[Leak]:
        """Every leak in what was kept and in *extra*; the client is closed."""
        self.client.close()
        found: list[Leak] = []
        for where, text in [*self.texts, *extra]:
            found += self.world.needles.search(where, text)
        return found


def chat_body(connection: str, stream: bool) -> dict[str, object]:
    """A chat request to *connection*'s model."""
    return {
        "model": f"{connection}/{MODEL}",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": stream,
        "max_tokens": 8,
    }


def _report(leaks: list[Leak]) -> str:
    # One line per place and secret, with one sample: the same echo repeats for days.
    first: dict[tuple[str, str], Leak] = {}
    for leak in leaks:
        first.setdefault((leak.where, leak.secret), leak)
    lines = [f"{w}: {s} in …{leak.around!r}…" for (w, s), leak in sorted(first.items())]
    return f"{len(leaks)} leaks in {len(first)} places:\n" + "\n".join(lines)


def _all_logs(caplog: pytest.LogCaptureFixture) -> tuple[str, str]:
    return ("server log", "\n".join(r.getMessage() for r in caplog.records) + caplog.text)


@pytest.fixture()
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every logger at DEBUG into *caplog*."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.mark.parametrize("mode", MODES)
def test_no_route_leaks_a_secret(
    world: World, mode: Mode, debug_log: pytest.LogCaptureFixture
) -> None:
    """Every route × every connection with the upstream echoing in *mode*: 0 found."""
    world.echo.mode = mode
    recorder = Recorder(world)
    for name in CONNECTIONS:
        for stream in (False, True):
            for path in ("/v1/chat/completions", "/v4/beta/chat/completions"):
                recorder.send("POST", path, json=chat_body(name, stream))
        recorder.send("GET", f"/v1/models/{name}/{MODEL}")
        recorder.send("GET", f"/api/connections/{name}/models?refresh=1")
        recorder.send("GET", f"/api/connections/{name}/status")
        recorder.send("POST", f"/api/connections/{name}/test", json={"model": MODEL})
        recorder.send("POST", "/api/preview", json=chat_body(name, False))
        recorder.send("POST", "/api/preview", json=chat_body(name, True))
    for path in ("/v1/models", "/healthz", "/api/connections"):
        recorder.send("GET", path)
    recorder.send("GET", "/healthz", key=None)
    _count(world, recorder, f"routes in {mode}")
    leaks = recorder.leaks(_all_logs(debug_log))
    assert not leaks, _report(leaks)


def test_wrong_gateway_keys_leak_nothing(world: World, debug_log: pytest.LogCaptureFixture) -> None:
    """A missing key, a wrong one, and one a character away from a real one."""
    world.echo.mode = "ok"
    recorder = Recorder(world)
    for key in (None, "sk-wrong", NEAR_MISS, SECRETS["gateway_key_2"] + "x"):
        recorder.send("POST", "/v1/chat/completions", key=key, json=chat_body("plain", False))
        recorder.send("POST", "/v1/chat/completions", key=key, json=chat_body("plain", True))
        recorder.send("POST", "/v4/beta/chat/completions", key=key, json=chat_body("plain", True))
        recorder.send("GET", "/v1/models", key=key)
        recorder.send("GET", "/healthz", key=key)
        recorder.send("GET", "/api/connections", key=key)
        recorder.send("POST", "/api/preview", key=key, json=chat_body("plain", False))
    _count(world, recorder, "wrong keys")
    leaks = recorder.leaks(_all_logs(debug_log))
    assert not leaks, _report(leaks)


@pytest.mark.parametrize("mode", ["ok", "half_masked", "split"])
def test_cli_leaks_nothing(
    world: World,
    mode: Mode,
    debug_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``chatgate connections list|status|models|test`` and ``preview``, text and JSON."""
    world.echo.mode = mode
    config = str(world.config)
    for flag in ([], ["--json"]):
        main(["--config", config, "connections", "list", *flag])
        main(["--config", config, "connections", "status", *flag])
    for name in CONNECTIONS:
        main(["--config", config, "connections", "models", name])
        main(["--config", config, "connections", "test", name, "-m", MODEL, "--json"])
        body = orjson.dumps(chat_body(name, False)).decode()
        asyncio.run(run_preview(Gateway(load_settings(config)), body))
    args = argparse.Namespace(action="test", name="plain", json=False, model=MODEL)
    try:
        asyncio.run(run_connections(Gateway(load_settings(config)), args))
    except ChatgateError as exc:
        print(exc.message, file=sys.stderr)  # what `main` shows of it
    world.stats[f"cli runs in {mode}"] = 4 + 3 * len(CONNECTIONS) + 1
    out = capsys.readouterr()
    leaks = world.needles.search(f"cli {mode} stdout", out.out)
    leaks += world.needles.search(f"cli {mode} stderr", out.err)
    leaks += world.needles.search(f"cli {mode} log", _all_logs(debug_log)[1])
    assert not leaks, _report(leaks)


def _count(world: World, recorder: Recorder, what: str) -> None:
    world.stats[f"requests: {what}"] = recorder.requests


def test_the_search_finds_what_it_should(world: World) -> None:
    """The search itself: a whole key, a fragment and a long prefix are found; the
    masked form and the last four characters alone are not."""
    key = SECRETS["api_key"]
    needles = world.needles
    assert needles.search("t", f"x {key} y")
    assert needles.search("t", f"x {key[5:13]} y")
    assert needles.search("t", f"x {key[:4]}... y")
    assert not needles.search("t", f"key {key[:3]}...{key[-4:]} refused")
    assert not needles.search("t", f"ends in {key[-4:]}")


@pytest.mark.parametrize(
    "text",
    [
        "key (sk-qsR6...sbBi) refused",  # the end piece followed by punctuation
        "key sk-qsR6RZ24****sbBi.",
        "token ya29.Tq...U0eA expired",  # a dot inside the start piece
        "token ya29.Tq7vL****U0eA, again",
    ],
)
def test_half_masked_echoes_are_masked(text: str) -> None:
    """The half-masked forms the first run let through (issue 13)."""
    keys = ["sk-qsR6RZ24lPoQj3oPUlieI2nVsbBi", TOKEN]
    shown = redact(text, keys)
    assert "qsR6" not in shown and "ya29.T" not in shown, shown
    assert "sk-...sbBi" in shown or "ya2...U0eA" in shown, shown


def test_a_fragment_is_found_at_every_offset() -> None:
    """The scan probes every fourth position; a run starting anywhere is still found."""
    key = SECRETS["api_key"]
    for offset in range(12):
        for start in range(len(key) - FRAGMENT + 1):
            text = "x" * offset + key[start : start + FRAGMENT] + " end"
            assert key[start : start + FRAGMENT] not in redact(text, [key]), (offset, start)


def test_counts(world: World) -> None:
    """The figures of the run (shown with ``-s``): the search did search."""
    grams, edges = len(world.needles.grams), len(world.needles.edges)
    sent = sum(v for k, v in world.stats.items() if k.startswith("requests"))
    print(f"\nsecret-leak run: {sent} gateway requests, {world.echo.requests} upstream requests,")
    print(f"{grams} 8-character fragments and {edges} prefixes/suffixes searched; {world.stats}")
    assert world.echo.requests > 0 and grams > 0
