"""The engine worker: a child process that owns the model and serves it over loopback.

Run by `chatgate.engine.supervisor` as ``python -m chatgate.engine.worker SETTINGS``,
where SETTINGS is a JSON object (model path, context, parallel sequences, threads,
port). It loads the GGUF file into xllamacpp's llama.cpp server, which batches every
request of every client in one context and answers llama-server's own HTTP API on
``127.0.0.1`` behind a bearer token that only the gateway knows
(``CHATGATE_ENGINE_TOKEN``). It then prints one JSON line on stdout, ``{"ready": ...}``,
and lives until its stdin closes (the gateway went away) or it is signalled.

Nothing here runs in the gateway's process: a fault in native code (SIGILL, SIGSEGV,
an abort, the OOM killer) ends this process only, and the supervisor starts another.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
from typing import Any

from chatgate.engine.cpu import missing_features

EXIT_UNSUPPORTED_CPU = 3
EXIT_LOAD_FAILED = 4


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the gateway dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the stdin watch below still ends the process


def _report(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _configure(settings: dict[str, Any], token: str) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = settings["model"]
    params.n_parallel = settings["parallel"]
    # llama-server divides n_ctx among its slots: each sequence gets context_size.
    params.n_ctx = settings["context_size"] * settings["parallel"]
    params.cpuparams.n_threads = settings["threads"]
    params.cpuparams_batch.n_threads = settings["threads_batch"]
    params.hostnames = ["127.0.0.1"]
    params.port = settings.get("port", 0)
    params.api_keys = [token]
    params.ui = False
    params.endpoint_slots = False
    params.endpoint_metrics = True
    params.verbosity = settings.get("verbosity", 0)
    params.cache_ram_mib = settings.get("cache_ram_mib", 256)
    return params


def main(argv: list[str]) -> int:
    """Load the model, serve it, and report readiness; returns the exit code."""
    _die_with_parent()
    settings = json.loads(argv[1])
    missing = missing_features()
    if missing:
        _report(
            error=(
                "this CPU lacks " + ", ".join(missing) + ", which the embedded engine's "
                "portable build needs (x86-64 with AVX2, FMA and F16C); use a remote "
                "connection, or run chatgate on a newer CPU"
            ),
            fatal=True,
        )
        return EXIT_UNSUPPORTED_CPU
    token = os.environ.pop("CHATGATE_ENGINE_TOKEN", "")
    import xllamacpp

    try:
        server = xllamacpp.Server(_configure(settings, token))
    except Exception as exc:  # the library raises plain RuntimeError/ValueError
        _report(error=f"cannot load model {settings['model']}: {exc}", fatal=True)
        return EXIT_LOAD_FAILED
    _report(
        ready=True,
        address=server.listening_address,
        pid=os.getpid(),
        system_info=xllamacpp.get_system_info().strip(),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def watch_stdin() -> None:
        sys.stdin.read()  # returns when the gateway closes the pipe or dies
        stop.set()

    watcher = threading.Thread(target=watch_stdin, daemon=True)
    watcher.start()
    stop.wait()
    del server  # its destructor stops the HTTP threads and frees the model
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
