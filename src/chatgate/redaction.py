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
from collections.abc import Iterable

FRAGMENT = 8  # the shortest run of a secret's characters that counts as a leak
# A half-masked echo: something, a run of mask characters, something.
_MASKED = re.compile(r"([^\s*.…'\"]{3,})(?:\*{3,}|\.{3,}|…+)([^\s*.…'\"]{3,})")


def mask_secret(secret: str) -> str:
    """Show a key the way a person recognises it without revealing it: ``sk-...abcd``."""
    if len(secret) <= FRAGMENT:
        return "..."
    head = secret[:3] if secret[:3].isascii() else ""
    return f"{head}...{secret[-4:]}"


def redact(text: str, secrets: Iterable[str]) -> str:
    """*text* without any secret, fragment of one, or half-masked echo of one."""
    known = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not known or not text:
        return text
    for secret in known:
        if secret in text:
            text = text.replace(secret, mask_secret(secret))
    long_enough = [s for s in known if len(s) >= FRAGMENT]
    if not long_enough:
        return text
    text = _MASKED.sub(lambda m: _unmasked(m, long_enough), text)
    return _without_fragments(text, long_enough)


def _unmasked(match: re.Match[str], secrets: list[str]) -> str:
    head, tail = match.group(1), match.group(2)
    for secret in secrets:
        # The echo's start must be a piece of the secret's start, its end of its end.
        start = next((i for i in range(len(head)) if secret.startswith(head[i:])), None)
        if start is not None and len(head) - start >= 3 and secret.endswith(tail):
            return head[:start] + mask_secret(secret)
    return match.group(0)


def _without_fragments(text: str, secrets: list[str]) -> str:
    grams = {s[i : i + FRAGMENT]: s for s in secrets for i in range(len(s) - FRAGMENT + 1)}
    out: list[str] = []
    i = 0
    kept = 0  # text[kept:i] is clean and not yet copied
    while i <= len(text) - FRAGMENT:
        secret = grams.get(text[i : i + FRAGMENT])
        if secret is None:
            i += 1
            continue
        end = i + FRAGMENT
        while end < len(text) and text[i : end + 1] in secret:
            end += 1
        masked = mask_secret(secret)
        if text[i:end] in masked:  # our own masked form is not a leak
            i = end
            continue
        out.append(text[kept:i])
        out.append(masked)
        i = kept = end
    out.append(text[kept:])
    return "".join(out)
