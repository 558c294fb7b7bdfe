"""The page's colours pass WCAG 2.2 AA, in the light and the dark scheme: 4.5:1 for text,
3:1 for the edges of controls, the focus ring and the charts' marks (1.4.3, 1.4.11).
The ratios are written in docs/web.md; this recomputes them from style.css."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatgate.server import web

TEXT = 4.5
GRAPHIC = 3.0
# (foreground, background, the least ratio): every pair the stylesheet draws.
PAIRS: list[tuple[str, str, float]] = [
    ("text", "bg", TEXT),
    ("text", "surface", TEXT),
    ("text", "alert-bg", TEXT),
    ("muted", "bg", TEXT),
    ("muted", "surface", TEXT),
    ("accent", "bg", TEXT),
    ("accent", "surface", TEXT),
    ("on-accent", "accent", TEXT),
    ("error", "bg", TEXT),
    ("error", "surface", TEXT),
    ("on-danger", "error", TEXT),
    ("warn", "bg", TEXT),
    ("warn", "surface", TEXT),
    ("border", "bg", GRAPHIC),
    ("border", "surface", GRAPHIC),
    ("focus", "bg", GRAPHIC),
    ("focus", "surface", GRAPHIC),
    ("ok", "bg", GRAPHIC),
    ("unknown", "bg", GRAPHIC),
    *((f"s{n}", "bg", GRAPHIC) for n in range(7)),
    *((f"s{n}", "surface", GRAPHIC) for n in range(7)),
]


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one: str, other: str) -> float:
    """The WCAG contrast ratio of two #rrggbb colours."""
    high, low = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def schemes() -> dict[str, dict[str, str]]:
    """The custom properties of each scheme, the dark one over the light."""
    css = (web.STATIC / "style.css").read_text()
    light_block = re.search(r":root\s*\{(.*?)\}", css, re.S)
    dark_block = re.search(r"prefers-color-scheme:\s*dark\)\s*\{\s*:root\s*\{(.*?)\}", css, re.S)
    assert light_block and dark_block

    def props(block: str) -> dict[str, str]:
        return dict(re.findall(r"--([a-z0-9-]+):\s*(#[0-9a-fA-F]{6})\s*;", block))

    light = props(light_block.group(1))
    return {"light": light, "dark": {**light, **props(dark_block.group(1))}}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_pair_passes_aa(scheme: str) -> None:
    colours = schemes()[scheme]
    failing = [
        f"{fg} on {bg}: {contrast(colours[fg], colours[bg]):.2f} < {least}"
        for fg, bg, least in PAIRS
        if contrast(colours[fg], colours[bg]) < least
    ]
    assert not failing


def test_the_documented_ratios_are_the_stylesheets() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "web.md").read_text()
    light, dark = schemes()["light"], schemes()["dark"]
    for fg, bg, _ in PAIRS:
        ratios = [f"{contrast(colours[fg], colours[bg]):.2f}" for colours in (light, dark)]
        row = f"| `--{fg}` on `--{bg}` | {ratios[0]} | {ratios[1]} |"
        assert row in doc, f"docs/web.md should have the row: {row}"
