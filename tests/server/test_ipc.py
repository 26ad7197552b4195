"""The front end <-> worker boundary: typed messages in frames, and frames that hold garbage."""

from __future__ import annotations

import pickle
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from marserve.handler_metrics import MetricRecord
from marserve.inference_request import InferenceRequest, Parameter
from marserve.results import PredictionResult
from marserve.server import worker_main
from marserve.server.ipc import HEADER, AsyncChannel, BlockingChannel, Unreadable
from marserve.server.messages import (
    FROM_WORKER,
    TO_WORKER,
    BatchResults,
    FromWorker,
    Loaded,
    LoadFailed,
    RunBatch,
    Stop,
    ToWorker,
    WorkerSpec,
)


def raw_frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


GARBAGE = raw_frame(b"\x80\x05not a pickle at all")
NOT_A_MESSAGE = raw_frame(pickle.dumps(("results", 1, [], [], False)))


def test_typed_messages_round_trip_and_the_channel_ends_cleanly() -> None:
    left, right = socket.socketpair()
    worker: BlockingChannel[FromWorker, ToWorker] = BlockingChannel(left, accepts=TO_WORKER)
    front: BlockingChannel[ToWorker, FromWorker] = BlockingChannel(right, accepts=FROM_WORKER)
    result = PredictionResult(request_id="r", status=200, body=b"\x00" * 100_000, content_type="x")
    record = MetricRecord(name="HandlerTime", value=1.5, unit="ms", dimensions={"Level": "Model"})
    sent = BatchResults(batch_id=1, results=[result], metrics=[record], recycle=False)
    worker.send(sent)
    assert front.receive() == sent
    left.shutdown(socket.SHUT_WR)
    assert front.receive() is None


def test_requests_pickle_as_constructor_calls_of_their_fields() -> None:
    """Not through dataclasses' Python-level `__getstate__`, which cost the front end a third of
    its pickling time per batch; and a field-by-field copy comes back equal."""
    request = InferenceRequest(
        request_id="r", parameters=(Parameter("body", "x", b"1"),), headers=(("a", "b"),)
    )
    batch = RunBatch(batch_id=7, requests=[request])
    for value in (batch, request, request.parameters[0], LoadFailed(reason="no")):
        assert value.__reduce__()[0] is type(value)
        assert pickle.loads(pickle.dumps(value)) == value


def test_garbage_and_foreign_values_are_unreadable_and_the_next_frame_still_reads() -> None:
    left, right = socket.socketpair()
    worker: BlockingChannel[FromWorker, ToWorker] = BlockingChannel(left, accepts=TO_WORKER)
    right.sendall(GARBAGE + NOT_A_MESSAGE + raw_frame(pickle.dumps(Loaded())))
    right.sendall(raw_frame(pickle.dumps(Stop())))
    garbage, foreign, wrong_direction, stop = (worker.receive() for _ in range(4))
    assert isinstance(garbage, Unreadable) and "does not unpickle" in garbage.reason
    assert isinstance(foreign, Unreadable) and "holds tuple" in foreign.reason
    assert isinstance(wrong_direction, Unreadable) and "holds Loaded" in wrong_direction.reason
    assert stop == Stop()


async def test_the_front_end_channel_reports_garbage_as_unreadable() -> None:
    left, right = socket.socketpair()
    front: AsyncChannel[ToWorker, FromWorker] = await AsyncChannel.open(left, accepts=FROM_WORKER)
    right.sendall(GARBAGE + raw_frame(pickle.dumps(Loaded())))
    right.close()
    assert isinstance(await front.receive(), Unreadable)
    assert await front.receive() == Loaded()
    assert await front.receive() is None
    front.close()


def test_a_worker_skips_what_it_cannot_read_and_answers_the_next_batch(
    tmp_path: Path, server_kit: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A real worker loop on a real model: garbage before a batch changes nothing but a log line."""
    model_dir = server_kit.scripted_model_dir(tmp_path / "model", name="m")
    spec = WorkerSpec(
        model_dir=str(model_dir),
        model_name="m",
        handler=None,
        gpu_id=None,
        batch_size=1,
        yaml_config={},
        threads=None,
        log_format="text",
        memory_limit_mb=0,
    )
    worker_end, front_end = socket.socketpair()
    exit_codes: list[int] = []
    worker = threading.Thread(
        target=lambda: exit_codes.append(
            worker_main.serve(BlockingChannel(worker_end, accepts=TO_WORKER), spec)
        )
    )
    worker.start()
    front: BlockingChannel[ToWorker, FromWorker] = BlockingChannel(front_end, accepts=FROM_WORKER)
    assert front.receive() == Loaded()
    front_end.sendall(GARBAGE + NOT_A_MESSAGE)
    request = InferenceRequest("r1", (Parameter("body", "application/json", b"{}"),), ())
    front.send(RunBatch(batch_id=7, requests=[request]))
    answer = front.receive()
    assert isinstance(answer, BatchResults) and answer.batch_id == 7
    assert [r.status for r in answer.results] == [200]
    assert any(record.name == "ScriptedCalls" for record in answer.metrics)
    skipped = [r.getMessage() for r in caplog.records if "skipped a message" in r.getMessage()]
    assert len(skipped) == 2, skipped
    front.send(Stop())
    worker.join(timeout=30)
    assert exit_codes == [0]
