"""Front end <-> worker process transport: one pickled message per length-prefixed frame.

A 4-byte length plus one pickle per message keeps a round trip to a few tens of microseconds and
needs no schema; both ends are marserve code from the same install, so pickle is trusted here.
The message types are in `messages.py`; each end says which ones it accepts.

A frame whose payload does not unpickle, or unpickles to a type the reader does not accept, is
handed to the reader as `Unreadable` rather than raised: the length prefix has already been
honoured, so the next frame starts where it should and the stream can still be trusted.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from dataclasses import dataclass
from typing import Generic, TypeVar

HEADER = struct.Struct("!I")
PROTOCOL = pickle.HIGHEST_PROTOCOL

Sent = TypeVar("Sent")
Received = TypeVar("Received")


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A frame that arrived whole but holds no message this end accepts, and why."""

    reason: str


def encode(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=PROTOCOL)
    return HEADER.pack(len(payload)) + payload


def decode(payload: bytes, accepts: tuple[type[Received], ...]) -> Received | Unreadable:
    """The message in one frame's payload, or `Unreadable` saying what was wrong with it."""
    try:
        message = pickle.loads(payload)
    except Exception as error:  # any garbage: truncated, foreign, or naming a missing class
        return Unreadable(f"a {len(payload)}-byte frame does not unpickle: {error!r}")
    if not isinstance(message, accepts):
        return Unreadable(f"a frame holds {type(message).__name__}, not a message")
    return message


class BlockingChannel(Generic[Sent, Received]):
    """The worker process's end: plain blocking socket calls, one message at a time."""

    def __init__(self, sock: socket.socket, *, accepts: tuple[type[Received], ...]) -> None:
        self._sock = sock
        self._reader = sock.makefile("rb")
        self._accepts = accepts

    def send(self, message: Sent) -> None:
        self._sock.sendall(encode(message))

    def receive(self) -> Received | Unreadable | None:
        """Returns the next message, or None when the front end has gone away."""
        header = self._reader.read(HEADER.size)
        if len(header) < HEADER.size:
            return None
        (size,) = HEADER.unpack(header)
        payload = self._reader.read(size)
        if len(payload) < size:
            return None
        return decode(payload, self._accepts)


class AsyncChannel(Generic[Sent, Received]):
    """The front end's end, on the event loop."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        accepts: tuple[type[Received], ...],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._accepts = accepts

    @classmethod
    async def open(
        cls, sock: socket.socket, *, accepts: tuple[type[Received], ...]
    ) -> AsyncChannel[Sent, Received]:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
        return cls(reader, writer, accepts=accepts)

    def send(self, message: Sent) -> None:
        self._writer.write(encode(message))

    async def receive(self) -> Received | Unreadable | None:
        """Returns the next message, or None once the worker's end is closed."""
        try:
            header = await self._reader.readexactly(HEADER.size)
            (size,) = HEADER.unpack(header)
            payload = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return decode(payload, self._accepts)

    def close(self) -> None:
        self._writer.close()
