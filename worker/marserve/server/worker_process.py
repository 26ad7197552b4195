"""Worker processes forked from the fork server (see `fork_server.py`), as asyncio sees them."""

from __future__ import annotations

import asyncio
import socket
from multiprocessing.process import BaseProcess

from marserve.server import fork_server, worker_main
from marserve.server.messages import WorkerSpec


class WorkerProcess:
    """One forked worker, with the asyncio-friendly wait and kill the supervisor needs."""

    def __init__(self, process: BaseProcess) -> None:
        self._process = process
        self._exited: asyncio.Future[None] | None = None

    @classmethod
    async def start(cls, *, sock: socket.socket, spec: WorkerSpec) -> WorkerProcess:
        """Forks a worker serving on `sock`; starts the fork server unless it already runs."""
        process = fork_server.context().Process(
            target=worker_main.run_child,
            args=(sock, spec),
            name=f"marserve-worker-{spec.model_name}",
        )
        await asyncio.to_thread(process.start)  # blocks while the fork server imports torch
        return cls(process)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def exited(self) -> asyncio.Future[None]:
        """Resolves once the process has exited. The sentinel is watched once and the future
        shared, so the supervisor can wait on it beside other work while `wait` also uses it."""
        if self._exited is None:
            loop = asyncio.get_running_loop()
            exited: asyncio.Future[None] = loop.create_future()
            sentinel = self._process.sentinel

            def mark_exited() -> None:
                loop.remove_reader(sentinel)
                if not exited.done():
                    exited.set_result(None)

            if self._process.exitcode is None:
                loop.add_reader(sentinel, mark_exited)
            else:
                exited.set_result(None)
            self._exited = exited
        return self._exited

    def kill(self) -> None:
        if self._process.exitcode is None:
            self._process.kill()

    async def wait(self) -> int:
        """Waits for the exit without blocking the loop; a signal gives its negative number."""
        await asyncio.shield(self.exited())
        self._process.join(timeout=1)
        code = self._process.exitcode
        return -1 if code is None else code

    async def reap(self, timeout: float = 5.0) -> None:
        """Lets the worker exit on its own after its channel closed; kills it if it lingers."""
        try:
            await asyncio.wait_for(self.wait(), timeout=timeout)
        except TimeoutError:
            self.kill()
            await self.wait()
