"""`python -m marbench`: run the benchmark, print the Markdown tables, write the JSON."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from marbench import report, runner
from marbench.config import MODELS, PEER_SERVERS, SERVERS, BenchConfig, ModelYaml

REPO = Path(__file__).resolve().parents[2]


def _names(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(name for name in text.split(",") if name)
        unknown = sorted(set(names) - set(allowed))
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
        return names

    return parse


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(value) for value in text.split(","))


def parse_config(argv: list[str]) -> BenchConfig:
    parser = argparse.ArgumentParser(prog="marbench", description=__doc__)
    parser.add_argument(
        "--servers",
        type=_names(SERVERS + PEER_SERVERS),
        default=SERVERS,
        help=f"any of {', '.join(SERVERS + PEER_SERVERS)} (peers need their venvs: make bench)",
    )
    parser.add_argument("--models", type=_names(MODELS), default=MODELS)
    parser.add_argument("--concurrency", type=_ints, default=(1, 16, 64))
    parser.add_argument("--rounds", type=int, default=2, help="A/B rounds per model")
    parser.add_argument("--duration", type=int, default=5, help="seconds measured per point")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per point")
    parser.add_argument(
        "--server-warmup",
        type=int,
        default=5,
        help="seconds of load after each server start, before the first point",
    )
    parser.add_argument(
        "--max-requests", type=int, default=1_000_000, help="safety bound on requests per point"
    )
    parser.add_argument("--physical-iterations", type=int, default=2000)
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where archives and server logs go (default: a fresh folder)",
    )
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--marserve-bin", type=Path, default=Path(sys.executable).with_name("marserve")
    )
    parser.add_argument("--torchserve-venv", type=Path, default=REPO / ".venv-torchserve")
    parser.add_argument(
        "--peer-venv-dir", type=Path, default=REPO, help="where the peers' .venv-<peer> folders are"
    )
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return BenchConfig(
        servers=args.servers,
        models=args.models,
        concurrencies=args.concurrency,
        rounds=args.rounds,
        duration_s=args.duration,
        warmup_s=args.warmup,
        server_warmup_s=args.server_warmup,
        max_requests=args.max_requests,
        work_dir=(args.work_dir or args.results_dir / f"work-{stamp}").resolve(),
        results_dir=args.results_dir.resolve(),
        marserve_bin=args.marserve_bin,
        torchserve_venv=args.torchserve_venv.resolve(),
        model_yaml=ModelYaml(),
        physical_iterations=args.physical_iterations,
        peer_venv_dir=args.peer_venv_dir.resolve(),
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_config(sys.argv[1:] if argv is None else argv)
    results = runner.run(config)
    summary = report.summarize(results)
    tables = report.render(results, summary)
    print(tables)
    config.results_dir.mkdir(parents=True, exist_ok=True)
    (config.results_dir / "latest.md").write_text(tables)
    json_path = config.results_dir / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    report.write_json(json_path, config=config, results=results, summary=summary)
    report.write_json(
        config.results_dir / "latest.json", config=config, results=results, summary=summary
    )
    print(f"results: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
