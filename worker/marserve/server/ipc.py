"""Front end <-> worker process messages: pickled tuples in length-prefixed frames on a socketpair.

A 4-byte length plus one pickle per message keeps a round trip to a few tens of microseconds and
needs no schema; both ends are marserve code from the same install, so pickle is trusted here.

Messages from the front end: ("batch", batch_id, [request dict, ...]) and ("stop",).
Messages from a worker: ("ready",), ("failed", reason), ("chunk", request_id, result),
("results", batch_id, [PredictionResult, ...], [metric tuple, ...]).
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any

HEADER = struct.Struct("!I")
PROTOCOL = pickle.HIGHEST_PROTOCOL


def encode(message: tuple[Any, ...]) -> bytes:
    payload = pickle.dumps(message, protocol=PROTOCOL)
    return HEADER.pack(len(payload)) + payload


class BlockingChannel:
    """The worker process's end: plain blocking socket calls, one message at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = sock.makefile("rb")

    def send(self, message: tuple[Any, ...]) -> None:
        self._sock.sendall(encode(message))

    def receive(self) -> tuple[Any, ...] | None:
        """Returns the next message, or None when the front end has gone away."""
        header = self._reader.read(HEADER.size)
        if len(header) < HEADER.size:
            return None
        (size,) = HEADER.unpack(header)
        payload = self._reader.read(size)
        if len(payload) < size:
            return None
        message: tuple[Any, ...] = pickle.loads(payload)
        return message


class AsyncChannel:
    """The front end's end, on the event loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> AsyncChannel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
        return cls(reader, writer)

    def send(self, message: tuple[Any, ...]) -> None:
        self._writer.write(encode(message))

    async def receive(self) -> tuple[Any, ...] | None:
        """Returns the next message, or None once the worker's end is closed."""
        try:
            header = await self._reader.readexactly(HEADER.size)
            (size,) = HEADER.unpack(header)
            payload = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        message: tuple[Any, ...] = pickle.loads(payload)
        return message

    def close(self) -> None:
        self._writer.close()
