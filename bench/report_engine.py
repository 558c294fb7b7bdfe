"""The engine and this-run-against-the-previous-one parts of the benchmark report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.peers import ROOT

ENGINES = {
    "chatgate": "chatgate",
    "xllamacpp": "xllamacpp direct",
    "llama_cpp_python": "llama-cpp-python direct",
    "llama_server": "llama-server",
}
PHASES = {"idle": "idle", "contended": "under contention"}
STREAMS = {"tokens_per_s_1": "1 stream", "tokens_per_s_4": "4 streams"}


def engine_phases(entry: Any) -> dict[str, dict[str, Any]]:
    """A contender's measured phases ({} when skipped); reads older results too, whose
    engine figures were idle ones at the top level."""
    if not isinstance(entry, dict) or "skipped" in entry:
        return {}
    if "idle" in entry:
        return {p: entry[p] for p in PHASES if isinstance(entry.get(p), dict)}
    if "tokens_per_s_1" in entry:
        return {"idle": entry}
    return {}


def previous(path: Path) -> dict[str, Any] | None:
    """The figures of an earlier run's results file worth setting beside this run's."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        versions = old.get("versions", {})
        engine = old.get("engine", {})
        library = engine.get("library") or (
            f"llama-cpp-python {versions['llama-cpp-python']} in the gateway process"
            if versions.get("llama-cpp-python", "-") != "-"
            else "-"
        )
        return {
            "file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
            "date": old["date"],
            "quick": old.get("quick", False),
            "added_p50_ms": old["added_latency"]["chatgate"]["p50_ms"],
            "added_p99_ms": old["added_latency"]["chatgate"]["p99_ms"],
            "rps_c64": old["rps"]["chatgate"]["64"],
            "engine_library": library,
            "engine_max_tokens": engine.get("max_tokens"),
            "engine": {
                name: {
                    phase: {k: figures[k] for k in STREAMS if k in figures}
                    for phase, figures in engine_phases(engine.get(name)).items()
                }
                for name in ENGINES
                if engine_phases(engine.get(name))
            },
        }
    except (KeyError, TypeError, AttributeError):
        return None


def engine_ratios(engine: dict[str, Any]) -> dict[str, float]:
    """chatgate's tokens/s over each peer's, per phase and stream count."""
    ours = engine_phases(engine["chatgate"])
    out: dict[str, float] = {}
    for peer in list(ENGINES)[1:]:
        theirs = engine_phases(engine.get(peer))
        for phase in PHASES:
            if phase in ours and phase in theirs:
                for key in STREAMS:
                    if theirs[phase].get(key):
                        n = key.rsplit("_", 1)[1]
                        out[f"engine_{phase}_{n}_over_{peer}"] = (
                            ours[phase][key] / theirs[phase][key]
                        )
    return out


def fmt(value: float, digits: int = 2) -> str:
    """*value* with thousands separators and *digits* decimals."""
    return f"{value:,.{digits}f}"


def _change(before: float, now: float) -> str:
    return f"{100 * (now / before - 1):+.0f}%" if before else "—"


def comparison_section(r: dict[str, Any]) -> list[str]:
    """This run's headline figures beside those of the results file it replaces."""
    lines = ["", "## This run against the previous one", ""]
    prev = r.get("previous")
    if not prev:
        return [*lines, "No earlier results file (bench/results/latest.json) to compare with."]
    lines += [
        f"Previous: {prev['file']} of {prev['date']}"
        f"{' (a quick run)' if prev['quick'] else ''}, chatgate's engine then "
        f"{prev['engine_library']}; now {r['engine']['library']}.",
        "",
        "| | previous run | this run | change |",
        "| --- | ---: | ---: | ---: |",
    ]
    rows: list[tuple[str, float, float, int]] = [
        (
            "**added** latency p50, one at a time (ms)",
            prev["added_p50_ms"],
            r["added_latency"]["chatgate"]["p50_ms"],
            3,
        ),
        (
            "**added** latency p99, one at a time (ms)",
            prev["added_p99_ms"],
            r["added_latency"]["chatgate"]["p99_ms"],
            3,
        ),
        ("throughput at 64 connections (req/s)", prev["rps_c64"], r["rps"]["chatgate"]["64"], 0),
    ]
    for name, label in ENGINES.items():
        before, now = prev["engine"].get(name, {}), engine_phases(r["engine"].get(name))
        for phase, phase_label in PHASES.items():
            for key, streams in STREAMS.items():
                if key in before.get(phase, {}) and key in now.get(phase, {}):
                    rows.append(
                        (
                            f"engine: {label}, {phase_label}, {streams} (tokens/s)",
                            before[phase][key],
                            now[phase][key],
                            1,
                        )
                    )
    lines += [
        f"| {label} | {fmt(old, digits)} | {fmt(new, digits)} | {_change(old, new)} |"
        for label, old, new, digits in rows
    ]
    notes = []
    if prev["engine_max_tokens"] != r["engine"]["max_tokens"]:
        notes.append(
            f"The engine figures are for {prev['engine_max_tokens']} tokens then and "
            f"{r['engine']['max_tokens']} now: they do not compare."
        )
    if r["quick"]:
        notes.append("This is a quick run (tiny counts): its figures only show the harness works.")
    if notes:
        lines += ["", " ".join(notes)]
    return lines


def engine_section(r: dict[str, Any]) -> list[str]:
    """The engine table: idle and under contention, chatgate beside its peers."""
    e = r["engine"]
    lines = [
        f"SmolLM2-135M-Instruct Q4_1, {e['max_tokens']} tokens, greedy, the same messages "
        "for all; tokens per second = completion tokens / request wall time (1 stream: the "
        f"best of {e['rounds']} requests; 4 streams: the tokens of 4 requests sent at once "
        "over their wall time). **Under contention** is the same measurement with "
        f"{e['burner']} beside it, started just before and killed right after.",
        "",
    ]
    peers = ["xllamacpp", "llama_cpp_python"]
    if engine_phases(e.get("llama_server")):
        peers.append("llama_server")
    ours = engine_phases(e["chatgate"])
    before = (r.get("previous") or {}).get("engine", {}).get("chatgate", {})
    lines += [
        "| | chatgate, previous run | chatgate | "
        + " | ".join(ENGINES[p] for p in peers)
        + " | "
        + " | ".join(f"chatgate / {ENGINES[p]}" for p in peers)
        + " |",
        "| --- |" + " ---: |" * (2 + 2 * len(peers)),
    ]

    def cell(phases: dict[str, dict[str, Any]], phase: str, key: str) -> str:
        value = phases.get(phase, {}).get(key)
        return fmt(value, 1) if value is not None else "—"

    for phase, phase_label in PHASES.items():
        for key, streams in STREAMS.items():
            n = key.rsplit("_", 1)[1]
            cells = [cell(before, phase, key), cell(ours, phase, key)]
            cells += [cell(engine_phases(e.get(p)), phase, key) for p in peers]
            for p in peers:
                ratio = r["ratios"].get(f"engine_{phase}_{n}_over_{p}")
                cells.append(f"{ratio:.2f}×" if ratio is not None else "—")
            unit = "tokens/s" if n == "1" else "total tokens/s"
            lines.append(f"| {phase_label}, {streams} ({unit}) | " + " | ".join(cells) + " |")
    lines.append("")
    for name, label in ENGINES.items():
        data = e.get(name, {})
        if "skipped" in data:
            lines.append(f"- **{label}**: not measured: {data['skipped']}.")
            continue
        settings = data.get("settings", {})
        shown = ", ".join(
            f"{k} {v}" for k, v in settings.items() if k not in ("system_info", "version")
        )
        burner = data.get("contended", {}).get("burner", {})
        lines.append(
            f"- **{label}**: {shown}; ready in {data.get('load_s', '-')} s; the burner "
            f"used {burner.get('cores_used', '-')} cores while it was measured"
            + ("" if burner.get("alive_to_the_end", True) else " (**it died early**)")
            + "."
        )
    return lines
