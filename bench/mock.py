"""The mock upstream: nginx serving a fixed chat completion and a fixed SSE stream.

nginx answers from memory (``return 200 '...'``), so it is far faster than any Python
gateway in front of it; the report shows its own throughput to prove it is not the
limit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "mock-model",
    "system_fingerprint": "fp_bench",
    "choices": [
        {
            "index": 0,
            "logprobs": None,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "The quick brown fox jumps."},
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
}


def sse_stream(chunks: int) -> str:
    """A complete OpenAI stream: role, *chunks* content pieces, finish, [DONE]."""

    def frame(delta: dict[str, object], finish: str | None = None) -> str:
        data = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "mock-model",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return "data: " + json.dumps(data, separators=(",", ":")) + "\n\n"

    parts = [frame({"role": "assistant", "content": ""})]
    parts += [frame({"content": f" tok{i}"}) for i in range(chunks)]
    parts.append(frame({}, "stop"))
    parts.append("data: [DONE]\n\n")
    return "".join(parts)


def _nginx_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class NginxMock:
    """nginx on a loopback port, in a private prefix directory."""

    def __init__(self, port: int, chunks: int = 100) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.chunks = chunks
        self.dir = Path(tempfile.mkdtemp(prefix="chatgate-bench-nginx-"))
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        """nginx.conf: non-stream at /v1, stream at /stream/v1, both for any method."""
        models = json.dumps(
            {
                "object": "list",
                "data": [
                    {"id": "mock-model", "object": "model", "created": 0, "owned_by": "bench"}
                ],
            }
        )
        return f"""
worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_buffer_size 64k;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    server {{
        listen 127.0.0.1:{self.port};
        # nginx answers a POST to a static file with 405; error_page turns that into an
        # internal GET of the same file, so any method gets the fixed answer.
        location = /v1/chat/completions {{
            root {self.dir}/static;
            default_type application/json;
            error_page 405 =200 $uri;
        }}
        location = /stream/v1/chat/completions {{
            root {self.dir}/static;
            default_type text/event-stream;
            error_page 405 =200 $uri;
        }}
        location ~ /models$ {{
            default_type application/json;
            return 200 {_nginx_quote(models)};
        }}
    }}
}}
"""

    def start(self) -> None:
        """Write the config and start nginx in the foreground of a child process."""
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        static = self.dir / "static"
        (static / "v1/chat").mkdir(parents=True)
        (static / "stream/v1/chat").mkdir(parents=True)
        (static / "v1/chat/completions").write_text(json.dumps(COMPLETION, separators=(",", ":")))
        (static / "stream/v1/chat/completions").write_text(sse_stream(self.chunks))
        conf = self.dir / "nginx.conf"
        conf.write_text(self.config())
        # Started as root, nginx's workers run as "nobody": they must be able to read.
        for path in [self.dir, *self.dir.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        self.process = subprocess.Popen(
            [nginx, "-p", str(self.dir), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise RuntimeError(f"nginx did not start: {err}") from None
                time.sleep(0.05)
        raise RuntimeError("nginx did not start within 10 s")

    def stop(self) -> None:
        """Stop nginx and remove its directory."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
