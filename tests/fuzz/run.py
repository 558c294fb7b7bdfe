"""The fuzzing job: schemathesis against ``/openapi.json`` for ``/v1``, ``/v4/beta`` and
``/api``, on a real chatgate server without the embedded model, in front of the fake
OpenAI upstream (``tests/fakes/openai_server.py``).

Bounded on purpose (CI has 90 minutes for everything): a fixed number of examples per
operation, a fixed seed, and a wall-clock cap past which the run is killed and fails.
The rules are ``tests/fuzz/checks.py``; schemathesis' own conformance checks compare
every answer with the document. Run it with ``.venv/bin/python -m tests.fuzz.run``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

from chatgate.config import Connection, Settings
from tests.conftest import start_server
from tests.fakes.openai_server import FakeOpenAI, build_app, serve

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_KEY = "gw-fuzz-key-0123456789abcdef"
# The conformance checks hold the document to what the server really answers; the
# generic not_a_server_error is replaced by no_own_server_error (upstream 5xx are fine).
CHECKS = [
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "no_own_server_error",
    "door_shaped_json",
]


def settings_for(upstream: str) -> Settings:
    """No embedded model; one connection to the fake, one to a port nothing listens on."""
    settings = Settings(
        embedded=False,
        # The doors whose requests name no model (KoboldCpp, llama.cpp) go here.
        default_model="fake/gpt-fake-1",
        connections=[
            Connection(
                name="fake",
                source="custom",
                base_url=f"{upstream}/v1",
                api_key="sk-fuzz-upstream-key",
                models=["gpt-fake-1"],
            ),
            Connection(
                name="down",
                source="openai",
                base_url="http://127.0.0.1:9/v1",
                api_key="sk-fuzz-down-key",
                bypass_status_check=True,
            ),
        ],
    )
    settings.server.api_keys = [GATEWAY_KEY]
    return settings


def command(url: str, args: argparse.Namespace, reports: Path) -> list[str]:
    """The schemathesis command line for the server at *url*."""
    return [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {GATEWAY_KEY}",
        "--include-path-regex",
        "^/(v1|v4/beta|api)/",
        "--phases",
        "examples,coverage,fuzzing",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        # One worker and no example database: the same seed gives the same requests.
        "--workers",
        "1",
        "--generation-database",
        "none",
        # The key is the header above; a generated x-api-key would win over it (401).
        "--generation-with-security-parameters",
        "false",
        "--request-timeout",
        "20",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report",
        "json",
        "--report-dir",
        str(reports),
    ]


def summary(reports: Path) -> str:
    """The run's figures, from schemathesis' JSON report."""
    found = sorted(reports.glob("*.json"))
    if not found:
        return "no report written"
    report: dict[str, Any] = json.loads(found[-1].read_text())
    operations, cases = report["operations"], report["test_cases"]
    return (
        f"{operations['tested']} operations, {cases['generated']} test cases, "
        f"{cases['unique_failures']} unique failures, {len(report['errors'])} errors, "
        f"{report['running_time']:.0f} s"
    )


def main(argv: list[str] | None = None) -> int:
    """Start the fake upstream and chatgate, fuzz, and return schemathesis' exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=100, help="per operation")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max-seconds", type=int, default=300, help="wall-clock cap")
    parser.add_argument("--reports", type=Path, help="keep the JSON report here")
    args = parser.parse_args(argv)
    # A temporary directory by default: the report is read back here, not kept in the tree.
    args.reports = args.reports or Path(tempfile.mkdtemp(prefix="chatgate-fuzz-"))
    args.reports.mkdir(parents=True, exist_ok=True)
    # serve() is a generator: closing it stops the fake (typed as an Iterator there).
    upstream = cast(Generator[str, None, None], serve(build_app(FakeOpenAI())))
    url = next(upstream)
    live, server, thread = start_server(settings_for(url))
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.checks", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    try:
        done = subprocess.run(
            command(live.url, args, args.reports),
            # Its crash cache (.schemathesis/) goes with the report, not into the tree.
            cwd=args.reports,
            env=env,
            timeout=args.max_seconds,
            check=False,
        )
        status = done.returncode
    except subprocess.TimeoutExpired:
        print(f"fuzz: over the cap of {args.max_seconds} s; failing", file=sys.stderr)
        status = 124
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        upstream.close()
    elapsed = time.monotonic() - started
    print(f"fuzz: {summary(args.reports)}; exit {status} after {elapsed:.0f} s", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
