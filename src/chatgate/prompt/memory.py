"""``memory_strategy``: how much of a long conversation is sent.

``last_k`` keeps the last *k* messages. The system (and developer) messages at the start
are the instructions, not history, so they are always kept and not counted. The last
message is always kept, even with ``k = 0``, because a request must ask something. A
tool result whose call was cut away is dropped with it: no provider accepts an orphan
result. See ``docs/api.md``.
"""

from __future__ import annotations

from chatgate.extensions import MemoryStrategy
from chatgate.types import Message


def apply_memory(messages: list[Message], strategy: MemoryStrategy) -> list[Message]:
    """*messages* as *strategy* keeps them."""
    lead = 0
    while lead < len(messages) and messages[lead].role in ("system", "developer"):
        lead += 1
    head, history = messages[:lead], messages[lead:]
    keep = max(strategy.k, 1) if history else 0
    kept = history[max(0, len(history) - keep) :] if keep else []
    while len(kept) > 1 and kept[0].role == "tool":
        kept = kept[1:]
    return head + kept
