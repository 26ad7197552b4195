"""The one typed configuration of a benchmark run, built from the command line and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# marserve-grpc: the same marserve, driven through TorchServe's gRPC `Predictions` instead of HTTP;
# marserve-v2-binary and marserve-oip-grpc: through the Open Inference Protocol (`marbench.oip`).
SERVERS = ("marserve", "marserve-grpc", "marserve-v2-binary", "marserve-oip-grpc", "torchserve")
PEER_SERVERS = ("kserve_v1", "kserve_v2", "mlserver", "litserve", "rayserve")
MODELS = ("mlp_eager", "mlp_ts", "cnn", "resnet18")


@dataclass(frozen=True)
class ModelYaml:
    """The model YAML both servers read from the archive: one worker, dynamic batching."""

    batch_size: int = 8
    max_batch_delay_ms: int = 5
    workers: int = 1
    response_timeout_s: int = 120

    def render(self) -> str:
        return (
            f"minWorkers: {self.workers}\n"
            f"maxWorkers: {self.workers}\n"
            f"batchSize: {self.batch_size}\n"
            f"maxBatchDelay: {self.max_batch_delay_ms}\n"
            f"responseTimeout: {self.response_timeout_s}\n"
            # Only /v2 and the protocol's gRPC read it: the handler gets tensor `data` there.
            "openInferenceProtocol:\n"
            "  handlerInput: tensors\n"
        )


@dataclass(frozen=True)
class BenchConfig:
    """Everything a run varies; the defaults are the published run (`make bench`)."""

    servers: tuple[str, ...]
    models: tuple[str, ...]
    concurrencies: tuple[int, ...]
    rounds: int
    duration_s: int
    warmup_s: int
    server_warmup_s: int
    max_requests: int
    work_dir: Path
    results_dir: Path
    marserve_bin: Path
    torchserve_venv: Path
    model_yaml: ModelYaml
    physical_iterations: int
    start_timeout_s: float = 120.0
    peer_venv_dir: Path = Path(__file__).resolve().parents[2]
