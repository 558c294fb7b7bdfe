"""The ollama front door (being written: docs/doors.md)."""

from __future__ import annotations

from chatgate.server.doors import openai
from chatgate.server.doors.base import DoorEntry

ENTRY = DoorEntry(errors=openai.DOOR)
