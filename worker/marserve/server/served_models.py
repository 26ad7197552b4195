"""The models this server serves: lookup by name and version, and readiness as probes see it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marserve.server.errors import model_not_found
from marserve.server.scheduler import ModelScheduler


class ServedModels:
    """Every model's scheduler by name; ready when accepting work and every model can answer."""

    def __init__(self, schedulers: Mapping[str, ModelScheduler]) -> None:
        self.by_name = dict(schedulers)
        self.accepting = True

    @property
    def ready(self) -> bool:
        return self.accepting and all(s.ready for s in self.by_name.values())

    def find(self, model: str, version: str | None = None) -> ModelScheduler:
        """The model's scheduler, or a 404 ServingError; no version or "" means any version."""
        scheduler = self.by_name.get(model)
        if scheduler is None:
            raise model_not_found(model)
        if version not in (None, "", scheduler.source.version):
            raise model_not_found(model, version)
        return scheduler

    def health(self) -> tuple[int, dict[str, Any]]:
        """What /ping and gRPC Ping answer: 200 and Healthy when ready, else 503 and why not."""
        if self.ready:
            return 200, {"status": "Healthy"}
        waiting = sorted(name for name, s in self.by_name.items() if not s.ready)
        message = "Not ready: " + (
            ", ".join(waiting) + " not loaded" if self.accepting else "shutting down"
        )
        body = {"status": "Unhealthy", "code": 503, "type": "ServiceUnavailable"}
        return 503, {**body, "message": message}

    def listing(self) -> dict[str, Any]:
        """The model list the management APIs answer (HTTP GET /models, gRPC ListModels)."""
        return {
            "models": [
                {"modelName": name, "modelUrl": str(s.source.model_dir), "status": s.status}
                for name, s in sorted(self.by_name.items())
            ]
        }

    def descriptions(self, model: str, version: str | None) -> list[dict[str, Any]]:
        """A model's description as the management APIs answer it; version "all" means any."""
        return [self.find(model, None if version == "all" else version).describe()]
