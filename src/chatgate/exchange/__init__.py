"""Upstream I/O: the transport (`Transport`), its time bounds (`Timeouts`) and queued
jobs (`Job`). Nothing here imports an adapter or a backend; see ``docs/exchange.md``."""

from chatgate.exchange.timeouts import Timeouts
from chatgate.exchange.transport import Transport
from chatgate.upstream import Job

__all__ = ["Job", "Timeouts", "Transport"]
