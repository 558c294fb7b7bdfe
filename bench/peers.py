"""Start the gateways under test: chatgate and LiteLLM's proxy, each with one worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.load import Target, wait_ready

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VERSION = "1.106.2"
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
# Both gateways check the same kind of key: LiteLLM refuses to start without one.
GATEWAY_KEY = "sk-bench-gateway-key-0123456789"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A server process, its start-to-first-answer time, and how to stop it."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], target: Target, timeout: float = 120
    ) -> None:
        self.name = name
        # Kept open for the life of the process, which writes to it; closed in stop().
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            "w+b", prefix=f"bench-{name}-", delete=False
        )
        started = time.perf_counter()
        self.popen = subprocess.Popen(
            argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        try:
            wait_ready(target, timeout)
        except RuntimeError:
            self.log.flush()
            tail = Path(self.log.name).read_bytes()[-3000:].decode(errors="replace")
            self.stop()
            raise RuntimeError(f"{name} did not come up:\n{tail}") from None
        self.start_seconds = time.perf_counter() - started
        self.pid = self.popen.pid

    def stop(self) -> None:
        """Terminate the process (and wait for it)."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self.log.close()
        os.unlink(self.log.name)


def chatgate_target(port: int) -> Target:
    """chatgate's URLs and the model ids of the bench connections."""
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    return Target("chatgate", url, "mock/mock-model", url, "mockstream/mock-model", GATEWAY_KEY)


def start_chatgate(
    mock_url: str,
    port: int,
    *,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
    name: str = "chatgate",
    extra: str = "",
    server: str = "",
    args: tuple[str, ...] = (),
) -> Process:
    """``chatgate serve`` with two custom connections to the mock, no embedded model
    (*command* and *env* run another copy of chatgate, `bench.before`; *extra* is more
    TOML at the top, *server* more ``[server]`` lines, *args* more ``serve`` options)."""
    config = Path(tempfile.mkdtemp(prefix="bench-chatgate-")) / "chatgate.toml"
    # A store of its own: the usage rows and keys of a bench never reach the user's.
    config.write_text(f"""
embedded = false
store_url = "sqlite:///{config.parent}/store.db"
{extra}
[server]
api_keys = ["{GATEWAY_KEY}"]
{server}

[[connections]]
name = "mock"
source = "custom"
base_url = "{mock_url}/v1"
models = ["mock-model"]

[[connections]]
name = "mockstream"
source = "custom"
base_url = "{mock_url}/stream/v1"
models = ["mock-model"]
""")
    command = command or [str(Path(sys.executable).with_name("chatgate"))]
    env = {**(env or os.environ), "PYTHONUNBUFFERED": "1"}
    target = replace(chatgate_target(port), name=name)
    return Process(
        name,
        [*command, "--config", str(config), "serve", "--port", str(port), *args],
        env,
        target,
    )


def ensure_litellm() -> Path:
    """LiteLLM's proxy in its own virtualenv under bench/, at the pinned version."""
    binary = LITELLM_VENV / "bin" / "litellm"
    marker = LITELLM_VENV / f".installed-{LITELLM_VERSION}"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [
                str(LITELLM_VENV / "bin" / "pip"),
                "install",
                "--quiet",
                f"litellm[proxy]=={LITELLM_VERSION}",
            ],
            check=True,
        )
        marker.touch()
    return binary


def litellm_target(port: int) -> Target:
    """LiteLLM's URL and the model names of its config."""
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    return Target("litellm", url, "mock-model", url, "mock-stream", GATEWAY_KEY)


def start_litellm(mock_url: str, port: int) -> Process:
    """LiteLLM's proxy: offline cost map, no callbacks, no retries, one worker."""
    binary = ensure_litellm()
    config = Path(tempfile.mkdtemp(prefix="bench-litellm-")) / "litellm.yaml"
    config.write_text(f"""
model_list:
  - model_name: mock-model
    litellm_params:
      model: openai/mock-model
      api_base: {mock_url}/v1
      api_key: sk-bench
  - model_name: mock-stream
    litellm_params:
      model: openai/mock-model
      api_base: {mock_url}/stream/v1
      api_key: sk-bench
litellm_settings:
  num_retries: 0
  request_timeout: 60
  callbacks: []
  success_callback: []
  failure_callback: []
  drop_params: true
  set_verbose: false
router_settings:
  num_retries: 0
general_settings:
  master_key: {GATEWAY_KEY}
""")
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "DISABLE_SCHEMA_UPDATE": "True",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL", None)
    argv = [
        str(binary),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    return Process("litellm", argv, env, litellm_target(port), timeout=180)
