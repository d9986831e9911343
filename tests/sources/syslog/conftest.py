"""Helpers shared by the listener and rsyslog tests: a recording sink and a bounded wait."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from journalban.events import Event


class Recorder:
    """A sink that keeps every batch it is handed."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[Event]]] = []

    def __call__(self, source: str, events: list[Event]) -> None:
        self.batches.append((source, events))

    @property
    def events(self) -> list[Event]:
        return [event for _, batch in self.batches for event in batch]

    @property
    def messages(self) -> list[str]:
        return [event.message for event in self.events]


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
