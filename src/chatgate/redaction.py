"""Secrets out of every text that leaves chatgate: whole, in fragments, or half-masked.

An upstream that quotes a key back ("Incorrect API key provided: sk-ABCD****wxyz", or
a slice of it in a stack trace) must not reach a client, a log line or a preview. So
a text is cleaned of:

- every whole secret;
- any run of 8 or more characters that also occurs inside a secret (a fragment);
- the half-masked echoes providers print: a piece of a secret's start, three or more
  ``*``, ``.`` or ``…``, and a piece of its end (``sk-ABCD****wxyz``).

Each is replaced by the secret's own masked form (``sk-...wxyz``), so a person can still
tell which key an error is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import lru_cache

FRAGMENT = 8  # the shortest run of a secret's characters that counts as a leak
# A half-masked echo: something, a run of mask characters, something. A single dot
# belongs to the pieces (Google's tokens start "ya29."), only a run of three masks.
_PIECE = r"(?:[^\s*.…'\"]|\.(?!\.\.))"
_MASKED = re.compile(rf"({_PIECE}{{3,}}?)(?:\*{{3,}}|\.{{3,}}|…+)({_PIECE}{{3,}})")


def mask_secret(secret: str) -> str:
    """Show a key the way a person recognises it without revealing it: ``sk-...abcd``."""
    if len(secret) <= FRAGMENT:
        return "..."
    head = secret[:3] if secret[:3].isascii() else ""
    return f"{head}...{secret[-4:]}"


def redact(text: str, secrets: Iterable[str]) -> str:
    """*text* without any secret, fragment of one, or half-masked echo of one."""
    if not text:
        return text
    known, long_enough = _ordered(secrets if isinstance(secrets, tuple) else tuple(secrets))
    if not known:
        return text
    for secret in known:
        if secret in text:
            text = text.replace(secret, mask_secret(secret))
    if not long_enough:
        return text
    if "***" in text or "..." in text or "…" in text:  # the regex costs 10x the scan
        text = _MASKED.sub(lambda m: _unmasked(m, long_enough), text)
    return _without_fragments(text, long_enough)


@lru_cache(maxsize=64)
def _ordered(secrets: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # Cached: every answer and frame is redacted against the same few sets. Longest
    # first, so a secret that contains another is masked whole.
    known = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
    return known, tuple(s for s in known if len(s) >= FRAGMENT)


def _unmasked(match: re.Match[str], secrets: tuple[str, ...]) -> str:
    head, tail = match.group(1), match.group(2)
    for secret in secrets:
        # The echo's start must be a piece of the secret's start, its end of its end;
        # what comes after the end piece (")", a full stop) is kept as it was.
        start = next((i for i in range(len(head)) if secret.startswith(head[i:])), None)
        end = next((j for j in range(len(tail), 2, -1) if secret.endswith(tail[:j])), None)
        if start is not None and len(head) - start >= 3 and end is not None:
            return head[:start] + mask_secret(secret) + tail[end:]
    return match.group(0)


QUARTER = FRAGMENT // 2  # every run of FRAGMENT holds a whole aligned block this long


@lru_cache(maxsize=16)
def _grams(secrets: tuple[str, ...]) -> tuple[dict[str, str], frozenset[str]]:
    # Cached: a stream redacts every frame with the same secrets, and a service
    # account's private key alone has over 1,600 runs.
    grams = {s[i : i + FRAGMENT]: s for s in secrets for i in range(len(s) - FRAGMENT + 1)}
    quarters = frozenset(g[i : i + QUARTER] for g in grams for i in range(FRAGMENT - QUARTER + 1))
    return grams, frozenset(quarters)


def _starts(text: str, grams: dict[str, str], quarters: frozenset[str]) -> Iterator[int]:
    """Where a run of a secret starts in *text*, in order. Only every QUARTER-th
    position is probed (4x fewer lookups on the answers and frames redacted whole):
    a run starting at i covers the aligned block at the next multiple of QUARTER."""
    for block in range(0, len(text) - QUARTER + 1, QUARTER):
        if text[block : block + QUARTER] in quarters:
            for i in range(max(0, block - QUARTER + 1), block + 1):
                if text[i : i + FRAGMENT] in grams:
                    yield i


def _without_fragments(text: str, secrets: tuple[str, ...]) -> str:
    grams, quarters = _grams(secrets)
    out: list[str] = []
    kept = done = 0  # text[kept:done] is clean and not yet copied
    for i in _starts(text, grams, quarters):
        if i < done:
            continue  # inside a run already handled
        secret = grams[text[i : i + FRAGMENT]]
        end = i + FRAGMENT
        while end < len(text) and text[i : end + 1] in secret:
            end += 1
        masked = mask_secret(secret)
        done = end
        if text[i:end] in masked:  # our own masked form is not a leak
            continue
        out.append(text[kept:i])
        out.append(masked)
        kept = end
    out.append(text[kept:])
    return "".join(out)


# --- what a server says about itself --------------------------------------------------
#
# An upstream that fails inside its own code may answer with a Python traceback
# (llama_cpp.server's 500s do) or name its files. Neither helps a client and both show
# how the server is laid out, so an upstream's error text is passed through `scrubbed`
# before it reaches a client or a log line.

_TRACEBACK = "Traceback (most recent call last):"
_FRAME = re.compile(r'^\s*File "[^"]*", line \d+')
# The last line of a traceback: ``ValueError: ...`` or ``llama_cpp.foo.Error: ...``.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)\b")
# A file system path: absolute (POSIX or Windows) with at least two parts, that ends in
# a file name with an extension or starts at a usual root. Not a URL's path (it follows
# a host), nor an API path such as /v1/chat/completions (no extension, no root).
_ROOTS = (
    "home|root|usr|opt|var|tmp|srv|app|apps|Users|mnt|etc|lib|lib64|nix|private|"
    "workspace|work|data|models|proc|run|snap|Library|System|Applications|venv|site-packages"
)
_POSIX_PATH = re.compile(
    r"(?<![\w:/.~-])(?:"
    rf"(?:/(?:{_ROOTS}))(?:/[^\s/\"'`<>:,;()\[\]]+)+"
    r"|(?:/[^\s/\"'`<>:,;()\[\]]+)+/[^\s/\"'`<>:,;()\[\]]+\.[A-Za-z][\w]{0,7}"
    r")/?"
)
_WINDOWS_PATH = re.compile(r"(?<![\w])[A-Za-z]:\\(?:[^\\\s\"'`<>:|?*]+\\)*[^\\\s\"'`<>:|?*]*")


def scrubbed(text: str) -> str:
    """*text* without a Python traceback (its last line, the exception, is kept) and
    with every file system path cut to its last part (``<path>/llama.py``)."""
    if _TRACEBACK in text or any(_FRAME.match(line) for line in text.splitlines()):
        text = _without_traceback(text)
    if "/" in text:
        text = _POSIX_PATH.sub(_last_part, text)
    if ":\\" in text:
        text = _WINDOWS_PATH.sub(_last_part, text)
    return text


def _last_part(match: re.Match[str]) -> str:
    name = re.split(r"[/\\]", match.group(0).rstrip("/\\"))[-1]
    return f"<path>/{name}" if name else "<path>"


def _without_traceback(text: str) -> str:
    before, header, after = text.partition(_TRACEBACK)
    if not header:  # frames without the header line: drop each frame and its source line
        lines = text.splitlines()
        kept = [
            line
            for at, line in enumerate(lines)
            if not _FRAME.match(line)
            and not (at > 0 and _FRAME.match(lines[at - 1]) and line.startswith("    "))
        ]
        return "\n".join(kept).strip() or "(a traceback, not shown)"
    exception = next(
        (
            line.strip()
            for line in reversed(after.splitlines())
            if _EXCEPTION_LINE.match(line.strip())
        ),
        None,
    )
    return " ".join(p for p in (before.strip(), exception) if p) or "(a traceback, not shown)"
