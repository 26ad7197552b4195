"""The bench's arithmetic: batch size from either server's metrics, medians, ratios, targets."""

from __future__ import annotations

from marbench import report, scrape
from marbench.physical import PhysicalLimit
from marbench.runner import PointResult, RunResults, ServerRun

TORCHSERVE_METRICS = """\
# HELP RequestsHandled Torchserve prometheus counter metric with unit: count
# TYPE RequestsHandled counter
RequestsHandled{ModelName="mlp",Level="Model",Hostname="vm",} {requests}
RequestsHandled{ModelName="other",Level="Model",Hostname="vm",} 999.0
# HELP BatchesHandled Torchserve prometheus counter metric with unit: count
# TYPE BatchesHandled counter
BatchesHandled{ModelName="mlp",Level="Model",Hostname="vm",} {batches}
"""

MARSERVE_METRICS = """\
# TYPE marserve_batch_size histogram
marserve_batch_size_count{{model="mlp",version="1.0"}} {batches}
marserve_batch_size_sum{{model="mlp",version="1.0"}} {requests}
"""


def test_average_batch_size_comes_from_the_handler_counter_of_that_model() -> None:
    def counters(requests: float, batches: float) -> scrape.BatchCounters:
        text = TORCHSERVE_METRICS.replace("{requests}", str(requests))
        return scrape.batch_counters(text.replace("{batches}", str(batches)), model="mlp")

    assert counters(164.0, 26.0).average_batch_size(counters(100.0, 18.0)) == 8.0
    assert counters(100.0, 18.0).average_batch_size(counters(100.0, 18.0)) is None


def test_average_batch_size_falls_back_to_the_native_histogram() -> None:
    before = scrape.batch_counters(MARSERVE_METRICS.format(batches=2, requests=2), model="mlp")
    after = scrape.batch_counters(MARSERVE_METRICS.format(batches=12, requests=42), model="mlp")
    assert after.average_batch_size(before) == 4.0


def point(concurrency: int, *, throughput: float, p50: float, p99: float) -> PointResult:
    return PointResult(
        concurrency=concurrency, throughput=throughput, p50_ms=p50, p90_ms=p50, p99_ms=p99,
        max_ms=p99, requests=100, errors=0, average_batch_size=1.0, cpu_s_per_1k=1.0,
        cpu_cores=0.5, error_statuses={}, capped=False,
    )  # fmt: skip


def server_run(server: str, round_index: int, *, scale: float) -> ServerRun:
    return ServerRun(
        server=server, model="mlp", round=round_index, start_to_first_200_s=2.0 * scale,
        idle_rss_bytes=int(100e6 * scale), idle_pss_bytes=int(90e6 * scale),
        peak_rss_bytes=int(120e6 * scale), load_average=1.0,
        points=[point(1, throughput=100 / scale, p50=1.0 * scale, p99=2.0 * scale),
                point(64, throughput=1000 / scale + round_index, p50=10 * scale, p99=40 * scale)],
    )  # fmt: skip


def results() -> RunResults:
    scales = {"marserve": 0.4, "torchserve": 1.0}
    runs = [server_run(server, index, scale=scale)
            for index in range(3) for server, scale in scales.items()]  # fmt: skip
    limit = PhysicalLimit(forward_us={1: 25.0, 8: 40.0}, handler_us={1: 60.0, 8: 90.0})
    return RunResults(physical={"mlp": limit}, runs=runs, torch_import_s=1.5)


def test_summary_takes_medians_over_rounds_and_targets_compare_the_servers() -> None:
    summary = report.summarize(results())

    ours = summary["mlp"]["marserve"]
    assert ours["rounds"] == 3
    assert ours["points"][64]["throughput"] == 2501.0  # rounds add 0, 1, 2: the median adds 1
    checked = {target.name: (round(target.value or 0, 3), target.met)
               for target in report.targets(summary, "mlp")}  # fmt: skip
    assert checked == {
        "throughput c=64, marserve / TorchServe": (round(2501 / 1001, 3), True),
        "p99 c=64, marserve / TorchServe": (0.4, True),
        "p50 c=1, marserve (ms)": (0.4, True),
        "start to first 200, marserve / TorchServe": (0.4, True),
        "idle RSS (sum over processes), marserve / TorchServe": (0.4, True),
        "idle PSS (shared pages counted once), marserve / TorchServe": (0.4, True),
    }


def test_rendered_tables_show_ratios_and_serving_overhead() -> None:
    data = results()
    text = report.render(data, report.summarize(data))

    assert "| mlp | 64 | **ratio** | 2.50 | 0.40 | 0.40 | 0.40 | - | 1.00 | 1.00 | 1.00 |" in text
    # Overhead at concurrency 1 is p50 minus the batch-1 forward pass: 0.4 ms - 0.025 ms.
    assert "| mlp | 25.0 | 40.0 | 60.0 | 90.0 | 0.38 | 0.97 |" in text


def test_peer_targets_set_marserve_against_the_best_other_server_on_each_measure() -> None:
    data = results()
    # kserve_v1 starts fastest and answers c=1 fastest; mlserver is fastest at c=64.
    fast_start = server_run("kserve_v1", 0, scale=0.3)
    fast_start.points = [point(1, throughput=500, p50=0.2, p99=0.5),
                         point(64, throughput=900, p50=20, p99=50)]  # fmt: skip
    fast_crowd = server_run("mlserver", 0, scale=0.5)
    data.runs.extend([fast_start, fast_crowd])
    summary = report.summarize(data)

    checked = {target.name: (round(target.value or 0, 3), target.met)
               for target in report.peer_targets(summary, "mlp")}  # fmt: skip
    assert checked == {
        "throughput c=64, marserve / best other (mlserver)": (round(2501 / 2000, 3), False),
        "p99 c=64, marserve / best other (mlserver)": (0.8, False),
        "p50 c=1, marserve / best other (kserve_v1)": (2.0, False),
        "start to first 200, marserve / best other (kserve_v1)": (round(0.4 / 0.3, 3), False),
    }
    text = report.render(data, summary)
    assert "| kserve_v1 | `/v1/models/{model}:predict` |" in text
    assert "| mlp | p99 c=64, marserve / best other (mlserver) | 0.80 | ≤ 0.7 | **no** |" in text


def test_peer_targets_need_another_server() -> None:
    data = results()
    data.runs[:] = [run for run in data.runs if run.server == "marserve"]

    assert report.peer_targets(report.summarize(data), "mlp") == []
    assert "Against the best other server" not in report.render(data, report.summarize(data))
