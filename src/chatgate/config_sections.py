"""The tables inside the config: ``[server]``, ``[resilience]``, a connection's option
tables (``[connections.google]``, ``.engine``, ``.text``) and ``[doors.<name>]``.
Imported by `chatgate.config`, which reads them all."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chatgate import resilience

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
LOCAL_MODEL_NAME = "smollm2-135m-instruct"


class Section(BaseModel):
    """A config table: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    """The ``[server]`` table."""

    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    api_keys: list[str] = Field(default_factory=list)
    api_keys_env: str | None = None
    # Keys that may also use the admin API (/api/connections, /api/usage, the web page's
    # routes); with none, every gateway key may (docs/admin-api.md).
    admin_keys: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    # Host headers accepted besides loopback while no gateway key is set ("name" or
    # "name:port"): a DNS-rebinding page arrives with its own name and is refused.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Web origins ("https://app.example") whose pages may call the gateway (CORS).
    cors_origins: list[str] = Field(default_factory=list)
    # Slow clients (docs/security.md): a request head must be in this many seconds after
    # the connection opens (or the request starts), a body this many after its head.
    header_timeout: float = Field(default=10.0, gt=0, le=3600)
    body_timeout: float = Field(default=60.0, gt=0, le=86400)
    # Connections served at once; requests on more are answered 503 and closed.
    max_connections: int = Field(default=1024, ge=1, le=1_000_000)
    # On SIGTERM: seconds the requests under way (open streams too) have to finish before
    # they are cancelled; the usage log is written after them either way.
    shutdown_timeout: int = Field(default=30, ge=0, le=86400)
    # /metrics (docs/metrics.md): counted by an observer of every attempt; off saves its
    # cost on the hot path. The route is behind the gateway key like the others.
    metrics: bool = True
    # OpenTelemetry traces (needs chatgate[otel]); OTEL_EXPORTER_OTLP_ENDPOINT turns them on too.
    otel: bool = False
    # `chatgate serve --workers N`: processes sharing the port (docs/performance.md).
    workers: int = Field(default=1, ge=1, le=64)

    def resolved_keys(self, env: Mapping[str, str]) -> list[str]:
        """Every key that authenticates: the gateway keys from the file, those of the
        variable ``api_keys_env`` names, and the admin keys."""
        keys = list(self.api_keys)
        if self.api_keys_env:
            keys += [k.strip() for k in env.get(self.api_keys_env, "").split(",") if k.strip()]
        return [*keys, *(k for k in self.admin_keys if k not in keys)]


class ResilienceSettings(Section):
    """The ``[resilience]`` table: the backoff between retries and the cool-down of a
    failing connection, in seconds (docs/resilience.md)."""

    # Strict: a TOML value has its type; `true` or "5" here is a mistake, not a number.
    model_config = ConfigDict(extra="forbid", strict=True)

    backoff_base: float = Field(default=resilience.BACKOFF_BASE, gt=0, allow_inf_nan=False)
    backoff_cap: float = Field(default=resilience.BACKOFF_CAP, gt=0, allow_inf_nan=False)
    eject_after: int = Field(default=resilience.EJECT_AFTER, ge=1)
    eject_base: float = Field(default=resilience.EJECT_BASE, gt=0, allow_inf_nan=False)
    eject_cap: float = Field(default=resilience.EJECT_CAP, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _caps_reach_their_bases(self) -> ResilienceSettings:
        for cap, base in (("backoff_cap", "backoff_base"), ("eject_cap", "eject_base")):
            if getattr(self, cap) < getattr(self, base):
                raise ValueError(
                    f"{cap} ({getattr(self, cap):g} s) is less than {base} "
                    f"({getattr(self, base):g} s)"
                )
        return self


class GoogleOptions(Section):
    """Options of a Google connection (sources ``google`` and ``vertexai``)."""

    safety_settings: list[dict[str, str]] | None = None
    region: str = "global"
    project: str | None = None
    service_account_file: str | None = None
    service_account_json_env: str | None = None


class EngineOptions(Section):
    """Options of the embedded engine (source ``local``)."""

    model_path: str | None = None
    model_alias: str = LOCAL_MODEL_NAME
    context_size: int = Field(default=2048, ge=128)
    threads: int | None = Field(default=None, ge=1)
    threads_batch: int | None = Field(default=None, ge=1)
    # Engine worker processes, each with its share of `parallel` (default: one per core).
    workers: int | None = Field(default=None, ge=1, le=64)
    # OpenMP's wait policy for the engine's threads (only matters with two or more).
    wait_policy: Literal["active", "passive"] | None = None
    # Seconds the engine worker may leave its watchdog's probe unanswered before it is
    # killed and restarted (a native hang); 0 turns the watchdog off.
    engine_watchdog: float = Field(default=30.0, ge=0)
    parallel: int = Field(default=4, ge=1, le=64)
    max_queue: int = Field(default=64, ge=0)


# Which options table belongs to which adapter (a catalogue row's ``adapter``).
class TextOptions(Section):
    """How a text-completion source turns a chat into one prompt (docs/instruct.md)."""

    # A preset id (`chatgate.prompt.instruct.PRESET_NAMES`); unset, the preset is chosen
    # from the model's own chat template where the server tells it, else ChatML.
    instruct_template: str | None = None
    # A SillyTavern instruct preset (its JSON fields), inline or read from a file at load.
    instruct_preset: dict[str, Any] | None = None
    instruct_template_file: str | None = None
    # A Jinja chat template that renders the prompt instead of a preset, or "backend":
    # the model's own template, as the server reports it.
    chat_template: str | None = None
    # Tokens the model reads and writes; unset, the server's figure, else 4096.
    context_size: int | None = Field(default=None, ge=128, le=10_000_000)
    # Ollama: how long the model stays loaded after a request ("5m", "-1", 0).
    keep_alive: str | int | None = None
    # Ollama: /api/generate with the prompt chatgate renders, or /api/chat.
    ollama_api: Literal["generate", "chat"] = "generate"
    # An OpenAI-style text server's request field for a GBNF grammar (llama-cpp-python:
    # "grammar"): a JSON response_format is sent there as a grammar (`generic`).
    grammar_field: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Queued sources (AI Horde): seconds between two polls of a job.
    poll_interval: float = Field(default=4.0, ge=0.05, le=60)

    @model_validator(mode="after")
    def _read_preset_file(self) -> TextOptions:
        if self.instruct_template_file and self.instruct_preset is None:
            path = Path(self.instruct_template_file).expanduser()
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"instruct_template_file {path}: {exc}") from None
            if not isinstance(data, dict):
                raise ValueError(f"instruct_template_file {path}: not a JSON object")
            self.instruct_preset = data
        return self


# The front doors a client may knock on (docs/doors.md); ``[doors.<name>]`` configures one.
DOOR_NAMES = ("openai", "sgp", "anthropic", "completions", "ollama", "kobold", "llamacpp")


class DoorOptions(Section):
    """``[doors.<name>]``: which connections one front door may reach, and the model it
    uses when a request names none (KoboldCpp and llama.cpp requests never do) or, on
    the Ollama door, names a bare model without a connection."""

    connections: list[str] | None = None  # None: every connection
    default_model: str | None = None
    default_connection: str | None = None
