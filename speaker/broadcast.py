"""Fan-out of events to any number of subscribers, never blocking the publisher."""

from __future__ import annotations

import logging
from typing import Generic, TypeVar

import trio

__all__ = ["Broadcast"]

T = TypeVar("T")


class Broadcast(Generic[T]):
    """Each :meth:`subscribe` gets a bounded channel of the items published from then
    on. A subscriber that falls ``buffer`` items behind is dropped (its channel
    closes) rather than slowing the publisher (a protocol session) down."""

    def __init__(self, buffer: int, name: str, log: logging.Logger) -> None:
        self._buffer = buffer
        self._name = name
        self._log = log
        self._channels: list[trio.MemorySendChannel[T]] = []

    def subscribe(self) -> trio.MemoryReceiveChannel[T]:
        send, receive = trio.open_memory_channel[T](self._buffer)
        self._channels.append(send)
        return receive

    def publish(self, item: T) -> None:
        for channel in list(self._channels):
            try:
                channel.send_nowait(item)
            except trio.WouldBlock:
                self._log.error("%s: a subscriber fell behind; dropping it", self._name)
                channel.close()
                self._channels.remove(channel)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._channels.remove(channel)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
