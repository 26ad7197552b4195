"""`python -m marbench.profile`: where marserve's time goes under one load point, with evidence.

Starts marserve on the bench's MLP archive, drives it with the bench's wrk load, and meanwhile
samples the front end and the worker with py-spy. Stack samples are put in buckets (HTTP parse,
HTTP write, routes and data plane, metrics, IPC, handler stages, idle), and /proc's schedstat shows
how long each process was runnable but waiting for a core: the cost of sharing two cores among
load generator, front end and worker. Needs py-spy (`pip install py-spy==0.4.1`).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from marbench import artifacts, load, procstats, servers
from marbench.config import BenchConfig, ModelYaml

# (bucket, path fragment, function or "" for any), matched from the innermost frame outwards;
# asyncio's own frames count only when no frame of the application is on the stack.
WORKER_BUCKETS = (
    ("waiting for a batch", "marserve/server/ipc.py", "receive"),
    ("results to the front end (pickle + send)", "marserve/server/ipc.py", ""),
    ("handler preprocess (JSON / PNG decode)", "bench_handler.py", ""),
    ("forward pass", "torch/nn/", ""),
    ("response encoding (JSON)", "marserve/responses.py", ""),
    ("response encoding (JSON)", "marserve/indented_json.py", ""),
    ("handler metrics", "marserve/handler_metrics.py", ""),
    ("Service / BaseHandler plumbing", "marserve/", ""),
)
FRONT_BUCKETS = (
    ("IPC with the worker (pickle, frames)", "marserve/server/ipc.py", ""),
    ("metrics", "prometheus_client/", ""),
    ("metrics", "marserve/server/metrics.py", ""),
    ("metrics", "marserve/server/metric_tallies.py", ""),
    ("batching and dispatch", "marserve/server/batching.py", ""),
    ("batching and dispatch", "marserve/server/scheduler.py", ""),
    ("batching and dispatch", "marserve/server/worker_pool.py", ""),
    ("batching and dispatch", "marserve/server/worker_session.py", ""),
    ("HTTP response write (+ send)", "aiohttp/http_writer.py", ""),
    ("HTTP response write (+ send)", "aiohttp/web_response.py", ""),
    ("HTTP response write (+ send)", "marserve/server/inference_connection.py", "_write"),
    ("HTTP response write (+ send)", "marserve/server/response_bytes.py", ""),
    ("HTTP request parse and dispatch", "marserve/server/request_head.py", ""),
    ("HTTP request parse and dispatch", "marserve/server/inference_dispatch.py", ""),
    ("routes, connections, data plane", "marserve/server/", ""),
    ("HTTP request parse and dispatch", "aiohttp/", ""),
)
EVENT_LOOP = ("event loop (asyncio, select, socket reads)", ("asyncio/", "selectors.py"))
EVENT_LOOP_RUN = "(asyncio/runners.py:"


def bucket_of(stack: list[str], buckets: tuple[tuple[str, str, str], ...]) -> str:
    """The bucket of the innermost frame that matches one. Frames up to the event loop's `run`
    are the server's start-up, on every stack: a sample with nothing above them is the loop
    itself (uvloop's C code, its polling and socket calls), not the code that started it."""
    runner = [index for index, frame in enumerate(stack) if EVENT_LOOP_RUN in frame]
    if runner:
        stack = stack[runner[-1] :]
    for frame in reversed(stack):
        function, _, location = frame.partition(" (")
        for name, fragment, wanted in buckets:
            if fragment in location and (not wanted or function == wanted):
                return name
    if any(fragment in frame for frame in stack for fragment in EVENT_LOOP[1]):
        return EVENT_LOOP[0]
    return "other"


def summarize(raw: Path, buckets: tuple[tuple[str, str, str], ...]) -> list[tuple[str, float]]:
    """Share of samples per bucket from py-spy's raw (collapsed stack) output."""
    counts: collections.Counter[str] = collections.Counter()
    if not raw.exists():
        return [("(py-spy wrote no samples for this process)", 1.0)]
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            counts[bucket_of(stack.split(";"), buckets)] += int(count)
    total = sum(counts.values()) or 1
    return [(name, count / total) for name, count in counts.most_common()]


def schedstat(pid: int) -> tuple[float, float]:
    """Seconds on a CPU and seconds runnable but waiting for one, since the process started."""
    on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def busiest_descendant(front: int, *, url: str, model: artifacts.BenchModel) -> int:
    """The worker: the descendant of the front end whose CPU time grows most under a short load.

    Workers may be direct children or forks of a fork server; only the one answering requests
    keeps spending CPU.
    """
    candidates = [pid for pid in procstats.tree_pids(front) if pid != front]
    before = {pid: procstats.process_cpu_seconds(pid) for pid in candidates}
    load.run(
        url,
        body_file=model.body_file,
        content_type=model.content_type,
        concurrency=4,
        duration_s=1,
        max_requests=10**9,
    )
    return max(candidates, key=lambda pid: procstats.process_cpu_seconds(pid) - before[pid])


def main() -> int:
    parser = argparse.ArgumentParser(prog="marbench.profile", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--model", default="mlp_eager")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        print("py-spy is not installed: pip install py-spy==0.4.1", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="marbench-profile-"))
    config = BenchConfig(
        servers=("marserve",), models=(args.model,), concurrencies=(args.concurrency,), rounds=1,
        duration_s=args.duration, warmup_s=1, server_warmup_s=0, max_requests=10**9,
        work_dir=work, results_dir=work, marserve_bin=Path(sys.executable).with_name("marserve"),
        torchserve_venv=work, model_yaml=ModelYaml(), physical_iterations=0,
    )  # fmt: skip
    model = artifacts.build(args.model, work_dir=work, model_yaml=config.model_yaml)
    server = servers.start("marserve", model=model, config=config, run_dir=work / "run")
    try:
        first_200_s = servers.wait_first_200(server, model=model, timeout_s=config.start_timeout_s)
        front = server.process.pid
        url = f"http://127.0.0.1:{server.ports.inference}/predictions/{model.name}"
        worker = busiest_descendant(front, url=url, model=model)
        outcome: list[load.LoadResult] = []
        driver = threading.Thread(target=lambda: outcome.append(load.run(
            url, body_file=model.body_file, content_type=model.content_type,
            concurrency=args.concurrency, duration_s=args.duration + 2, max_requests=10**9,
        )))  # fmt: skip
        before = {pid: schedstat(pid) for pid in (front, worker)}
        driver.start()
        recorders = [
            subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration",
                              str(args.duration), "--rate", "250", "--format", "raw",
                              "--nonblocking", "--output", str(work / f"{name}.raw")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in (("front", front), ("worker", worker))
        ]  # fmt: skip
        for recorder in recorders:
            recorder.wait()
        driver.join()
        after = {pid: schedstat(pid) for pid in (front, worker)}
    finally:
        server.stop()
    [result] = outcome
    print(
        f"marserve {model.name} c={args.concurrency}: {result.throughput:.0f} req/s, "
        f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, errors {result.errors}"
    )
    print(f"start to first 200: {first_200_s:.2f} s")
    seconds = result.duration_s
    for name, pid in (("front end", front), ("worker", worker)):
        on_cpu = after[pid][0] - before[pid][0]
        waiting = after[pid][1] - before[pid][1]
        print(
            f"{name}: on a CPU {on_cpu / seconds:.0%} of the run, runnable but waiting for a "
            f"core {waiting / seconds:.0%}; {on_cpu / max(result.requests, 1) * 1e6:.0f} µs "
            f"of CPU per request"
        )
    for name, buckets in (("front", FRONT_BUCKETS), ("worker", WORKER_BUCKETS)):
        print(f"\n{name} (share of py-spy samples, active threads only):")
        for bucket, share in summarize(work / f"{name}.raw", buckets):
            print(f"  {share:6.1%}  {bucket}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
