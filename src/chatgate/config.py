"""Settings: a TOML file, then the environment, then defaults.

The file is named by ``--config PATH`` or ``CHATGATE_CONFIG``. Environment variables
override single values (``CHATGATE_HOST``, ``CHATGATE_PORT``, ``CHATGATE_API_KEYS``,
``CHATGATE_MODEL_PATH``, ``CHATGATE_DEFAULT_MODEL``, ``CHATGATE_STORE_URL``). See
``docs/configuration.md``.
"""

from __future__ import annotations

import base64
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AliasChoices,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from chatgate.config_sections import (
    DEFAULT_HOST as DEFAULT_HOST,
)
from chatgate.config_sections import (
    DEFAULT_PORT as DEFAULT_PORT,
)
from chatgate.config_sections import (
    DOOR_NAMES as DOOR_NAMES,
)
from chatgate.config_sections import (
    LOCAL_MODEL_NAME as LOCAL_MODEL_NAME,
)
from chatgate.config_sections import (
    DoorOptions as DoorOptions,
)
from chatgate.config_sections import (
    EngineOptions as EngineOptions,
)
from chatgate.config_sections import (
    GoogleOptions as GoogleOptions,
)
from chatgate.config_sections import (
    ResilienceSettings as ResilienceSettings,
)
from chatgate.config_sections import (
    Section as _Section,
)
from chatgate.config_sections import (
    ServerSettings as ServerSettings,
)
from chatgate.config_sections import (
    TextOptions as TextOptions,
)
from chatgate.errors import ConfigError
from chatgate.exchange.streams import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_STREAM_DEADLINE,
)
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.sources import EMBEDDED, SOURCES, TEXT_ADAPTERS
from chatgate.types import NamesPolicy, PostProcessing
from chatgate.upstream import AUTH_HEADERS

OPTION_TABLES: dict[str, tuple[frozenset[str], type[_Section]]] = {
    "google": (frozenset({"gemini"}), GoogleOptions),
    "engine": (frozenset({EMBEDDED}), EngineOptions),
    "text": (TEXT_ADAPTERS, TextOptions),
}


class Connection(_Section):
    """One ``[[connections]]`` table: a source the user configured, under a name."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    source: str
    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    proxy_password: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    exclude_params: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    bypass_status_check: bool = False
    post_processing: PostProcessing | None = None
    names: NamesPolicy | None = None
    # Seconds: the whole non-stream answer, and each wait of a stream (for the first
    # bytes, then between reads); connecting; and, when set, the first bytes alone.
    timeout: float = Field(default=600.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    first_byte_timeout: float | None = Field(default=None, gt=0)
    # Bounds on what the upstream may send: a stream's whole time, one stream event or
    # line, and a whole non-stream answer. The deadline follows a longer timeout, so
    # raising the one never leaves the other short.
    stream_deadline: float = Field(
        default_factory=lambda data: max(DEFAULT_STREAM_DEADLINE, data.get("timeout", 0.0)),
        gt=0,
    )
    max_event_bytes: int = Field(default=DEFAULT_MAX_EVENT_BYTES, ge=1024)
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=1024)
    # Options of one kind of backend; the file may give them flat (as before) or as a
    # [connections.google] / [connections.engine] table.
    google: GoogleOptions = Field(default_factory=lambda: GoogleOptions())
    engine: EngineOptions = Field(default_factory=lambda: EngineOptions())
    text: TextOptions = Field(default_factory=lambda: TextOptions())
    # Also spelled drop_unsupported_params, the SGP name.
    drop_params: bool = Field(
        default=False, validation_alias=AliasChoices("drop_params", "drop_unsupported_params")
    )
    # A request's inference_extra_headers may replace the auth headers only if allowed.
    allow_auth_override: bool = False
    # Guided decoding: vLLM's own form ("structured_outputs" from vLLM 0.10.2, "legacy"
    # guided_* fields before), and how often a checked answer that fails is asked again.
    vllm_guided: Literal["structured_outputs", "legacy"] | None = None
    guided_retries: int = Field(default=2, ge=0, le=10)
    # Tries again after a 429, a 5xx or a connect error (docs/resilience.md); None: the
    # top-level ``retries``.
    retries: int | None = Field(default=None, ge=0, le=10)
    # Named base-URL overrides, chosen by a third model segment on /v4 (or conn@name/...).
    deployments: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _lift_options(cls, data: Any) -> Any:
        # The flat spelling (`region = ...` in the connection's table) stays valid.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        source = SOURCES.get(data.get("source")) if isinstance(data.get("source"), str) else None
        # A name two tables share (context_size) goes to this source's table; what is
        # left goes to another's, to be refused there by name.
        tables = sorted(
            OPTION_TABLES.items(), key=lambda t: source is None or source.adapter not in t[1][0]
        )
        for table, (_, model) in tables:
            flat = {k: data.pop(k) for k in list(data) if k in model.model_fields}
            if flat:
                given = data.get(table)
                nested = dict(given) if isinstance(given, dict) else {}
                data[table] = {**flat, **nested}
        return data

    @model_validator(mode="after")
    def _options_fit_the_source(self) -> Connection:
        source = SOURCES.get(self.source)
        if source is None:
            return self  # an unknown source is refused with the known ones listed
        for table, (adapters, _) in OPTION_TABLES.items():
            options = getattr(self, table)
            if options.model_fields_set and source.adapter not in adapters:
                names = ", ".join(sorted(options.model_fields_set))
                raise ValueError(
                    f"{names}: option of the {table} sources only, and this connection's "
                    f"source is '{self.source}'"
                )
        return self

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, value: dict[str, str]) -> dict[str, str]:
        # Caught at load: a bad header would otherwise fail (or desync the pool) on every
        # request to this connection.
        from chatgate.adapters.extras import check_headers  # kept local: one validator here

        problem = check_headers(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def key(self, env: Mapping[str, str]) -> str | None:
        """The API key: ``api_key``, else the variable ``api_key_env`` names; without the
        whitespace around it (a key read from a file usually ends in a newline, which no
        HTTP header may carry)."""
        if self.api_key and self.api_key.strip():
            return self.api_key.strip()
        if self.api_key_env:
            return env.get(self.api_key_env, "").strip() or None
        return None

    def secrets(self, env: Mapping[str, str]) -> list[str]:
        """Every secret this connection holds, for redaction."""
        found = [s.strip() for s in (self.api_key, self.proxy_password) if s and s.strip()]
        if self.api_key_env and env.get(self.api_key_env, "").strip():
            found.append(env[self.api_key_env].strip())
        for name, value in self.headers.items():
            if name.lower() in AUTH_HEADERS and value:
                found.append(value.removeprefix("Bearer ").strip())
                found.append(value)
        # A password written into a URL is a secret too, wherever an upstream echoes it,
        # and so is the "Basic base64(user:password)" it goes upstream as, which decodes
        # at a glance when an upstream quotes its Authorization header.
        for url in (self.base_url, *self.deployments.values()):
            try:
                parts = urlsplit(url) if url else None
                user, password = (parts.username, parts.password) if parts else (None, None)
            except ValueError:
                continue
            if password:
                found.append(password)
            if user or password:
                pairs = {
                    f"{user or ''}:{password or ''}",
                    f"{unquote(user or '')}:{unquote(password or '')}",
                }
                found += [base64.b64encode(pair.encode()).decode() for pair in pairs]
        return found


class Balance(_Section):
    """One ``[balance]`` pool: the ``connection/model`` targets that serve one model, and
    how a request picks among them (docs/resilience.md)."""

    targets: list[str] = Field(min_length=1)
    strategy: Literal["round_robin", "least_outstanding"] = "round_robin"


class Settings(_Section):
    """Everything chatgate is configured with."""

    default_model: str | None = None
    embedded: bool = True
    # The store of connections, keys and usage (docs/store.md): None is the SQLite file
    # in the user's data directory; "postgresql://..." for many instances.
    store_url: str | None = None
    # Shared state (limits, revocations) for many instances; None keeps it in-process.
    redis_url: str | None = None
    # The retries of a connection that sets none (docs/resilience.md).
    retries: int = Field(default=0, ge=0, le=10)
    # Per model id, the ordered alternatives tried when it fails:
    # "openai/gpt-4o" = ["claude/claude-sonnet-4", "local/smollm2-135m-instruct"].
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    # Load-balanced pools, keyed by the model id clients ask for ("pool/gpt-4o"), whose
    # connection part is no connection's name.
    balance: dict[str, Balance] = Field(default_factory=dict)
    # Backoff and cool-down timings (docs/resilience.md).
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    # Prompt post-processing (docs/post-processing.md).
    prompt_placeholder: str = Field(default=DEFAULT_PLACEHOLDER, min_length=1)
    names: NamesPolicy = "prefix"
    # The most messages one request may carry: a bound on the work one request makes.
    max_messages: int = Field(default=5000, ge=1)
    server: ServerSettings = Field(default_factory=ServerSettings)
    connections: list[Connection] = Field(default_factory=list)
    doors: dict[str, DoorOptions] = Field(default_factory=dict)

    @field_validator("doors")
    @classmethod
    def _known_doors(cls, value: dict[str, DoorOptions]) -> dict[str, DoorOptions]:
        for name in value:
            if name not in DOOR_NAMES:
                raise ValueError(f"unknown door {name!r} (the doors: {', '.join(DOOR_NAMES)})")
        return value

    def door(self, name: str) -> DoorOptions:
        """The options of the door called *name* (the defaults when not configured)."""
        return self.doors.get(name) or _NO_DOOR_OPTIONS

    @field_validator("connections")
    @classmethod
    def _unique_names(cls, value: list[Connection]) -> list[Connection]:
        seen: set[str] = set()
        for conn in value:
            if conn.name in seen:
                raise ValueError(f"two connections are named {conn.name!r}")
            seen.add(conn.name)
        return value

    def connection(self, name: str) -> Connection | None:
        """The connection called *name*, if any."""
        for conn in self.connections:
            if conn.name == name:
                return conn
        return None

    def secrets(self) -> list[str]:
        """Every secret in the settings (gateway keys and connection keys)."""
        env = os.environ
        out = self.server.resolved_keys(env)
        for conn in self.connections:
            out += conn.secrets(env)
        for url in (self.store_url, self.redis_url):
            password = urlsplit(url).password if url else None
            if password:
                out += {password, unquote(password)}
        return out


_NO_DOOR_OPTIONS = DoorOptions()


def _check_doors(settings: Settings) -> None:
    """Every connection a door names exists."""
    known = {c.name for c in settings.connections}
    for door, options in settings.doors.items():
        named = [*(options.connections or ()), *filter(None, [options.default_connection])]
        for name in named:
            if name not in known:
                raise ConfigError(
                    f"config: doors.{door}: no connection is named {name!r} "
                    f"(the connections: {', '.join(sorted(known)) or 'none'})"
                )
    pools = set(settings.balance)
    for pool, balance in settings.balance.items():
        where = pool.partition("/")[0].partition("@")[0]
        if not pool.partition("/")[2] or where in known:
            raise ConfigError(
                f"config: balance.{pool!r}: a pool is 'name/model' whose name is no "
                "connection's (a client asks for it as a model id)"
            )
        _check_targets(f"balance.{pool!r}", balance.targets, known)
    for model, alternatives in settings.fallbacks.items():
        first = [] if model in pools else [model]
        _check_targets(f"fallbacks.{model!r}", [*first, *alternatives], known)


def _check_targets(where: str, targets: list[str], known: set[str]) -> None:
    """Every target is 'connection/model' of a configured connection."""
    for target in targets:
        connection, _, name = target.partition("/")
        if not name or connection.partition("@")[0] not in known:
            raise ConfigError(
                f"config: {where}: {target!r} is not 'connection/model' of "
                f"a configured connection (the connections: {', '.join(sorted(known))})"
            )


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (if any), apply the environment, and validate."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    path = path or env.get("CHATGATE_CONFIG") or None
    if path is not None:
        file = Path(path)
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {file}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
    _apply_env(raw, env)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"config: {where}: {first['msg']}") from None
    _add_embedded(settings, env)
    _check_doors(settings)
    return settings


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    server = raw.setdefault("server", {})
    if "CHATGATE_HOST" in env:
        server["host"] = env["CHATGATE_HOST"]
    if "CHATGATE_PORT" in env:
        try:
            server["port"] = int(env["CHATGATE_PORT"])
        except ValueError:
            raise ConfigError("CHATGATE_PORT must be a whole number") from None
    if env.get("CHATGATE_API_KEYS"):
        keys = [k.strip() for k in env["CHATGATE_API_KEYS"].split(",") if k.strip()]
        server["api_keys"] = list(server.get("api_keys", [])) + keys
    if env.get("CHATGATE_ADMIN_KEYS"):
        keys = [k.strip() for k in env["CHATGATE_ADMIN_KEYS"].split(",") if k.strip()]
        server["admin_keys"] = list(server.get("admin_keys", [])) + keys
    if env.get("CHATGATE_DEFAULT_MODEL"):
        raw["default_model"] = env["CHATGATE_DEFAULT_MODEL"]
    if env.get("CHATGATE_STORE_URL"):
        raw["store_url"] = env["CHATGATE_STORE_URL"]
    if env.get("CHATGATE_REDIS_URL"):
        raw["redis_url"] = env["CHATGATE_REDIS_URL"]


def _add_embedded(settings: Settings, env: Mapping[str, str]) -> None:
    """Give every setup the embedded model unless it says otherwise."""
    local = [c for c in settings.connections if c.source == EMBEDDED]
    if not local and settings.embedded and settings.connection("local") is None:
        settings.connections.append(Connection(name="local", source=EMBEDDED))
        local = settings.connections[-1:]
    if env.get("CHATGATE_MODEL_PATH"):
        for conn in local:
            if conn.engine.model_path is None:
                conn.engine.model_path = env["CHATGATE_MODEL_PATH"]
    if settings.default_model is None:
        if local:
            settings.default_model = f"{local[0].name}/{local[0].engine.model_alias}"
        else:
            named = [c for c in settings.connections if c.models]
            if named:
                settings.default_model = f"{named[0].name}/{named[0].models[0]}"
