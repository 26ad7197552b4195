"""Dynamic batching: dispatch at once when idle, fill only under load, bounded queue."""

from __future__ import annotations

import asyncio

import pytest

from marserve.server.batching import DeadlineSweep, Job, ModelQueue, QueueFullError


def job(name: str) -> Job:
    return Job(request_id=name, request={}, loop=asyncio.get_running_loop())


def all_busy() -> bool:
    """The model's other workers are all busy: the one taking is the only idle one."""
    return True


async def test_a_lone_request_is_dispatched_without_waiting_for_company() -> None:
    queue = ModelQueue(capacity=10, batch_size=8, max_batch_delay_s=3600)
    queue.put(job("a"))
    batch = await asyncio.wait_for(queue.take(others_busy=all_busy), timeout=5)
    assert [j.request_id for j in batch] == ["a"]


async def test_an_idle_worker_wakes_up_for_the_next_request() -> None:
    queue = ModelQueue(capacity=10, batch_size=8, max_batch_delay_s=3600)
    taking = asyncio.create_task(queue.take(others_busy=all_busy))
    await asyncio.sleep(0)
    queue.put(job("a"))
    assert [j.request_id for j in await asyncio.wait_for(taking, timeout=5)] == ["a"]


async def test_a_ready_batch_is_taken_in_the_same_step_and_a_partial_one_under_load_is_not() -> (
    None
):
    queue = ModelQueue(capacity=20, batch_size=4, max_batch_delay_s=3600)
    assert queue.take_ready(others_busy=all_busy) is None
    queue.put(job("a"))
    ready = queue.take_ready(others_busy=all_busy)
    assert ready is not None and [j.request_id for j in ready] == ["a"]  # alone: no waiting
    for name in "bc":
        queue.put(job(name))
    assert queue.take_ready(others_busy=all_busy) is None  # partial under load: take() fills it
    assert [j.request_id for j in queue.take_ready(others_busy=lambda: False) or []] == ["b", "c"]
    for name in "defghi":
        queue.put(job(name))
    full = queue.take_ready(others_busy=all_busy)
    assert full is not None and [j.request_id for j in full] == ["d", "e", "f", "g"]


async def test_under_load_the_batch_fills_up_to_batch_size() -> None:
    queue = ModelQueue(capacity=10, batch_size=4, max_batch_delay_s=3600)
    for name in "ab":
        queue.put(job(name))
    taking = asyncio.create_task(queue.take(others_busy=all_busy))
    await asyncio.sleep(0)
    for name in "cde":
        queue.put(job(name))
    batch = await asyncio.wait_for(taking, timeout=5)
    assert [j.request_id for j in batch] == ["a", "b", "c", "d"]
    assert [j.request_id for j in await queue.take(others_busy=all_busy)] == ["e"]


async def test_under_load_a_partial_batch_leaves_after_the_delay() -> None:
    queue = ModelQueue(capacity=10, batch_size=8, max_batch_delay_s=0.01)
    for name in "abc":
        queue.put(job(name))
    batch = await asyncio.wait_for(queue.take(others_busy=all_busy), timeout=5)
    assert len(batch) == 3


async def test_under_load_a_partial_batch_leaves_when_no_one_else_is_coming() -> None:
    queue = ModelQueue(capacity=100, batch_size=64, max_batch_delay_s=60)
    for index in range(30):
        queue.put(job(str(index)))  # back to back: soon the next one is overdue
    batch = await asyncio.wait_for(queue.take(others_busy=all_busy), timeout=30)
    assert len(batch) == 30


async def test_a_partial_batch_does_not_wait_while_another_worker_is_idle() -> None:
    queue = ModelQueue(capacity=10, batch_size=8, max_batch_delay_s=3600)
    for name in "abc":
        queue.put(job(name))
    batch = await asyncio.wait_for(queue.take(others_busy=lambda: False), timeout=30)
    assert [j.request_id for j in batch] == ["a", "b", "c"]


async def test_finished_or_cancelled_jobs_are_skipped() -> None:
    queue = ModelQueue(capacity=10, batch_size=8, max_batch_delay_s=0)
    gone, kept = job("gone"), job("kept")
    queue.put(gone)
    queue.put(kept)
    gone.outcome.cancel()
    assert [j.request_id for j in await queue.take(others_busy=all_busy)] == ["kept"]


async def test_a_full_queue_refuses_new_jobs() -> None:
    queue = ModelQueue(capacity=2, batch_size=1, max_batch_delay_s=0)
    queue.put(job("a"))
    queue.put(job("b"))
    with pytest.raises(QueueFullError):
        queue.put(job("c"))


async def test_a_cancelled_take_gives_its_jobs_back_to_the_other_workers() -> None:
    queue = ModelQueue(capacity=10, batch_size=4, max_batch_delay_s=3600)
    queue.put(job("a"))
    queue.put(job("b"))
    dying_worker = asyncio.create_task(queue.take(others_busy=all_busy))
    await asyncio.sleep(0.01)  # it took both and now waits for the batch to fill
    assert len(queue) == 0
    dying_worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dying_worker
    assert len(queue) == 2
    queue.max_batch_delay_s = 0
    assert [j.request_id for j in await queue.take(others_busy=all_busy)] == ["a", "b"]


async def test_requeued_jobs_go_back_to_the_head_in_order_and_wake_a_worker() -> None:
    queue = ModelQueue(capacity=10, batch_size=8, max_batch_delay_s=0)
    waiting = asyncio.create_task(queue.take(others_busy=all_busy))
    await asyncio.sleep(0)
    queue.requeue([job("a"), job("b")])
    assert [j.request_id for j in await asyncio.wait_for(waiting, timeout=5)] == ["a", "b"]
    queue.put(job("d"))
    queue.requeue([job("b"), job("c")])
    assert [j.request_id for j in await queue.take(others_busy=all_busy)] == ["b", "c", "d"]


class ExpiredError(Exception):
    pass


async def test_the_deadline_sweep_fails_only_unanswered_jobs_past_the_timeout() -> None:
    sweep = DeadlineSweep(timeout_s=0.05, expired=ExpiredError)
    answered, late = job("answered"), job("late")
    sweep.add(answered)
    sweep.add(late)
    answered.outcome.set_result(None)  # type: ignore[arg-type]
    with pytest.raises(ExpiredError):
        await asyncio.wait_for(late.outcome, timeout=5)
    assert answered.outcome.result() is None
    fresh = job("fresh")
    sweep.add(fresh)  # the timer re-arms for a job added after a sweep emptied the deque
    with pytest.raises(ExpiredError):
        await asyncio.wait_for(fresh.outcome, timeout=5)


async def test_the_deadline_sweep_drops_answered_jobs_as_new_ones_arrive() -> None:
    sweep = DeadlineSweep(timeout_s=60, expired=ExpiredError)
    for index in range(100):
        current = job(str(index))
        sweep.add(current)
        current.outcome.set_result(None)  # type: ignore[arg-type]
    assert len(sweep) == 1
