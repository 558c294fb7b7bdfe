"""The usage log: one row per request in the store, written off the hot path.

`UsageLog` is a `chatgate.plan.Observer`: when an attempt ends it makes the row (time,
connection, model, door, caller, tokens, latency, status) and queues it on a
`BatchWriter`, whose thread writes batches to the store. The request pays for a
dataclass and an append; the database is never waited for on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from chatgate.batch_writer import BatchWriter
from chatgate.plan import ANONYMOUS, Attempt, Finished, Plan
from chatgate.store.errors import StoreError
from chatgate.store.rows import UsageRow

log = logging.getLogger("chatgate.usage")


class UsageLog:
    """Writes one usage row per finished attempt, in batches."""

    def __init__(
        self,
        sink: Callable[[Sequence[UsageRow]], object],
        *,
        secrets: Callable[[], list[str]] = list,
        max_delay: float = 0.2,
    ) -> None:
        self.writer: BatchWriter[UsageRow] = BatchWriter(
            sink, max_delay=max_delay, name="chatgate-usage-log", secrets=secrets
        )

    def started(self, plan: Plan, attempt: Attempt) -> None:
        """Nothing to write until the attempt ends."""

    def finished(self, plan: Plan, attempt: Attempt, result: Finished) -> None:
        """Queue the attempt's row."""
        usage = result.usage
        caller = plan.caller
        try:
            row = UsageRow(
                time=datetime.now(UTC) - timedelta(seconds=result.seconds),
                connection=attempt.route,
                model=attempt.request.model_name or plan.request.model,
                door=plan.door,
                caller=None if caller is ANONYMOUS else caller.id,
                tokens_in=usage.prompt_tokens if usage else 0,
                tokens_out=usage.completion_tokens if usage else 0,
                latency_ms=round(result.seconds * 1000),
                status=result.status,
                error_code=result.error_code,
                streamed=result.streamed,
            )
        except StoreError as exc:  # a row the store would refuse: say so, lose only it
            log.warning("a usage row was not kept: %s", exc.message)
            return
        self.writer.put(row)

    def close(self) -> None:
        """Write every queued row, then stop."""
        self.writer.close()
