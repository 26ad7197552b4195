"""What a model's pods say about it: the archive extraction, image pulls, scheduling and the
worker container's restarts, read from init container, container and pod conditions.

Pure functions over Pod dicts; `status` turns the findings into phases and conditions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from marserve.contract import ExtractedArchive
from marserve_operator.resources.dependencies import INSTALL_DEPS_CONTAINER

IMAGE_PULL_REASONS: Final = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)


@dataclass(frozen=True)
class Problem:
    """The most telling thing wrong with the model's pods: a condition reason and its message."""

    reason: str
    message: str


@dataclass(frozen=True)
class PodFindings:
    """What the pods say, summed over all of them."""

    archive_failure: Problem | None = None  # the extractor's, or the dependency install's
    extracting: bool = False
    installing_dependencies: bool = False
    archive_extracted: bool = False
    loading: bool = False
    image_pull: Problem | None = None
    unschedulable: Problem | None = None
    crash_loop: Problem | None = None
    model_version: str | None = None
    # Pods whose init container found the model in the shared archive cache, and that filled it.
    cache_hits: int = 0
    cache_fills: int = 0


def _terminated_message(state: Mapping[str, Any]) -> str:
    term = state.get("terminated") or {}
    message = str(term.get("message") or "").strip()
    return message or f"{term.get('reason') or 'Error'} (exit code {term.get('exitCode')})"


def _failed_termination(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The terminated state of a failed run, current or the last before a restart."""
    for state in (status.get("state") or {}, status.get("lastState") or {}):
        term = state.get("terminated")
        if term and int(term.get("exitCode") or 0) != 0:
            return state
    return None


def _scheduling(status: Mapping[str, Any], found: dict[str, Any]) -> None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            reason = str(cond.get("reason") or "Unschedulable")
            found.setdefault("unschedulable", Problem(reason, str(cond.get("message") or "")))


def _waiting_image_pull(state: Mapping[str, Any]) -> Problem | None:
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in IMAGE_PULL_REASONS:
        return Problem("ImagePullError", str(waiting.get("message") or waiting["reason"]))
    return None


def _init_containers(status: Mapping[str, Any], found: dict[str, Any]) -> None:
    inits = status.get("initContainerStatuses") or []
    for init in inits:
        state = init.get("state") or {}
        failed = _failed_termination(init)
        pull = _waiting_image_pull(state)
        installs = init.get("name") == INSTALL_DEPS_CONTAINER
        if failed is not None:
            reason = "DependencyInstallFailed" if installs else "ArchiveFailed"
            found.setdefault("archive_failure", Problem(reason, _terminated_message(failed)))
        elif pull is not None:
            found.setdefault("image_pull", pull)
        elif "running" in state:
            found["installing_dependencies" if installs else "extracting"] = True
        elif state.get("terminated"):
            record = ExtractedArchive.from_json(str(state["terminated"].get("message") or ""))
            version = record.model_version if record is not None else None
            found["model_version"] = version or found.get("model_version")
            if record is not None and record.cache_hit is not None:
                counter = "cache_hits" if record.cache_hit else "cache_fills"
                found[counter] = found.get(counter, 0) + 1
    done = [((i.get("state") or {}).get("terminated") or {}).get("exitCode") for i in inits]
    if inits and all(code == 0 for code in done):
        found["archive_extracted"] = True


def _workers(status: Mapping[str, Any], found: dict[str, Any]) -> None:
    for worker in status.get("containerStatuses") or []:
        state = worker.get("state") or {}
        pull = _waiting_image_pull(state)
        last = _failed_termination(worker)
        crashing = (state.get("waiting") or {}).get("reason") == "CrashLoopBackOff"
        if pull is not None:
            found.setdefault("image_pull", pull)
        elif crashing or (int(worker.get("restartCount") or 0) > 0 and last is not None):
            message = _terminated_message(last) if last else "the worker keeps exiting"
            found.setdefault("crash_loop", Problem("WorkerCrashLooping", message))
        elif "running" in state:
            found["archive_extracted"] = True
            found["loading"] = found.get("loading") or not worker.get("ready")


def inspect_pods(pods: Sequence[Mapping[str, Any]]) -> PodFindings:
    """Read the scheduling conditions, init containers and workers of every live pod."""
    found: dict[str, Any] = {}
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        _scheduling(status, found)
        _init_containers(status, found)
        _workers(status, found)
    return PodFindings(**found)
