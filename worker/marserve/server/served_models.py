"""The models this server serves: lookup by name and version, and readiness as probes see it."""

from __future__ import annotations

from collections.abc import Mapping

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
