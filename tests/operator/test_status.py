"""Status derivation: each thing a user's pods can report maps to a phase, a condition reason and
the cluster's own message."""

from __future__ import annotations

from typing import Any

import pytest

from marserve.contract import ExtractedArchive
from marserve_operator import status
from marserve_operator.spec import ModelSpec, parse_spec

NOW = "2026-11-22T01:00:00Z"
EARLIER = "2026-11-22T00:00:00Z"


def _model(**spec: Any) -> ModelSpec:
    base = {"archive": {"uri": "https://models.example.com/m.mar"}, "replicas": 2}
    return parse_spec(name="m", namespace="ml", spec={**base, **spec}, generation=3)


def _deployment(*, ready: int, updated: int | None = None, generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": generation,
            "replicas": max(ready, updated or 0),
            "readyReplicas": ready,
            "updatedReplicas": ready if updated is None else updated,
        },
    }


def _pod(
    *,
    init: dict[str, Any] | None = None,
    worker: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    pod_status: dict[str, Any] = {"conditions": conditions or []}
    if init is not None:
        pod_status["initContainerStatuses"] = [{"name": "extract", **init}]
    if worker is not None:
        pod_status["containerStatuses"] = [{"name": "worker", **worker}]
    return {"metadata": {"name": "m-1"}, "status": pod_status}


def _build(
    model: ModelSpec | None = None,
    *,
    deployment: dict[str, Any] | None = None,
    pods: list[dict[str, Any]] | None = None,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return status.build_status(
        model=model or _model(),
        deployment=deployment,
        pods=pods or [],
        previous=previous or {},
        now=NOW,
        url="http://m.ml.svc:8080/predictions/m",
        selector="app=m",
    )


def _condition(result: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in result["conditions"] if c["type"] == type_)


EXTRACTED = {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}


def test_no_deployment_yet_is_pending_with_every_condition() -> None:
    result = _build()
    assert result["phase"] == "Pending"
    assert [c["type"] for c in result["conditions"]] == list(status.CONDITION_TYPES)
    assert all(c["observedGeneration"] == 3 for c in result["conditions"])
    assert result["observedGeneration"] == 3
    assert (result["replicas"], result["readyReplicas"]) == (0, 0)
    assert result["selector"] == "app=m"


def test_all_replicas_ready_is_ready() -> None:
    result = _build(deployment=_deployment(ready=2), pods=[_pod(init=EXTRACTED)])
    assert result["phase"] == "Ready"
    assert _condition(result, "Available")["status"] == "True"
    assert _condition(result, "ArchiveReady")["reason"] == "ArchiveExtracted"
    assert _condition(result, "Progressing") | {"lastTransitionTime": None} == {
        "type": "Progressing",
        "status": "False",
        "reason": "RolloutComplete",
        "message": "2/2 replicas up to date",
        "lastTransitionTime": None,
        "observedGeneration": 3,
    }


def test_some_replicas_ready_is_degraded() -> None:
    result = _build(deployment=_deployment(ready=1))
    assert result["phase"] == "Degraded"
    assert _condition(result, "Available")["message"] == "1/2 replicas ready"


def test_degraded_model_says_why_the_missing_replicas_are_missing() -> None:
    unscheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    }
    result = _build(deployment=_deployment(ready=1), pods=[_pod(conditions=[unscheduled])])
    assert result["phase"] == "Degraded"
    assert _condition(result, "Available")["message"] == (
        "1/2 replicas ready; Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    )


def test_running_init_container_is_extracting() -> None:
    result = _build(deployment=_deployment(ready=0), pods=[_pod(init={"state": {"running": {}}})])
    assert result["phase"] == "Extracting"
    assert _condition(result, "ArchiveReady")["status"] == "Unknown"


def test_worker_not_ready_yet_is_loading() -> None:
    pod = _pod(init=EXTRACTED, worker={"ready": False, "state": {"running": {}}})
    result = _build(deployment=_deployment(ready=0), pods=[pod])
    assert result["phase"] == "Loading"
    assert _condition(result, "ArchiveReady")["status"] == "True"
    assert _condition(result, "Available")["reason"] == "Loading"


def test_failed_extractor_reports_its_termination_message() -> None:
    message = "archive https://models.example.com/m.mar: HTTP 404"
    pod = _pod(init={"state": {"terminated": {"exitCode": 2, "message": message}}})
    result = _build(deployment=_deployment(ready=0), pods=[pod])
    archive = _condition(result, "ArchiveReady")
    assert (archive["status"], archive["reason"], archive["message"]) == (
        "False",
        "ArchiveFailed",
        message,
    )
    assert result["phase"] == "Failed"
    assert _condition(result, "Available")["reason"] == "ArchiveFailed"


def _installing_pod(install_state: dict[str, Any]) -> dict[str, Any]:
    """A pod whose extractor finished and whose dependency install is in `install_state`."""
    pod = _pod(init={"state": {"terminated": {"exitCode": 0, "message": ""}}})
    pod["status"]["initContainerStatuses"].append({"name": "install-deps", "state": install_state})
    return pod


def test_failed_dependency_install_reports_pips_message_with_its_own_reason() -> None:
    message = (
        "marserve install-deps: requirements file requirements.txt could not be installed: pip "
        "could not install it: ERROR: No matching distribution found for timm==99"
    )
    pod = _installing_pod({"terminated": {"exitCode": 2, "message": message}})
    result = _build(deployment=_deployment(ready=0), pods=[pod])
    archive = _condition(result, "ArchiveReady")
    assert (archive["status"], archive["reason"], archive["message"]) == (
        "False",
        "DependencyInstallFailed",
        message,
    )
    assert result["phase"] == "Failed"
    assert _condition(result, "Available")["reason"] == "DependencyInstallFailed"
    events = [e for e in status.transitions({}, result) if e.reason == "DependencyInstallFailed"]
    assert [e.type for e in events] == ["Warning", "Warning"]  # ArchiveReady and Available


def test_a_running_dependency_install_is_still_preparing_the_archive() -> None:
    result = _build(pods=[_installing_pod({"running": {}})])
    archive = _condition(result, "ArchiveReady")
    assert (archive["status"], archive["reason"]) == ("Unknown", "InstallingDependencies")
    assert result["phase"] == "Extracting"


def test_extractor_without_a_message_reports_its_exit() -> None:
    pod = _pod(init={"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}})
    archive = _condition(_build(pods=[pod]), "ArchiveReady")
    assert archive["message"] == "OOMKilled (exit code 137)"


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff"])
def test_image_pull_errors_have_their_own_reason(reason: str) -> None:
    waiting = {"state": {"waiting": {"reason": reason, "message": "pull access denied"}}}
    result = _build(deployment=_deployment(ready=0), pods=[_pod(init=waiting)])
    available = _condition(result, "Available")
    assert (available["reason"], available["message"]) == ("ImagePullError", "pull access denied")
    assert result["phase"] == "Failed"


def test_unschedulable_pod_names_the_missing_gpu() -> None:
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    unscheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
    }
    result = _build(deployment=_deployment(ready=0), pods=[_pod(conditions=[unscheduled])])
    available = _condition(result, "Available")
    assert (available["reason"], available["message"]) == ("Unschedulable", message)
    assert result["phase"] == "Pending"


def test_crash_looping_worker_has_its_own_reason() -> None:
    worker = {
        "ready": False,
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "message": "handler has no method handle"}},
    }
    result = _build(deployment=_deployment(ready=0), pods=[_pod(init=EXTRACTED, worker=worker)])
    available = _condition(result, "Available")
    assert (available["reason"], available["message"]) == (
        "WorkerCrashLooping",
        "handler has no method handle",
    )
    assert result["phase"] == "Failed"


def test_stalled_rollout_is_reported() -> None:
    deployment = _deployment(ready=0, updated=0)
    deployment["status"]["conditions"] = [
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "m-1" has timed out progressing.',
        }
    ]
    result = _build(deployment=deployment)
    assert _condition(result, "Progressing")["reason"] == "ProgressDeadlineExceeded"
    assert result["phase"] == "Failed"


def test_rollout_in_progress_until_the_deployment_sees_its_generation() -> None:
    deployment = _deployment(ready=2, generation=2)
    deployment["status"]["observedGeneration"] = 1
    result = _build(deployment=deployment)
    assert _condition(result, "Progressing")["reason"] == "RollingOut"


def test_deleted_pods_are_ignored() -> None:
    pod = _pod(init={"state": {"terminated": {"exitCode": 2, "message": "bad"}}})
    pod["metadata"]["deletionTimestamp"] = EARLIER
    assert _condition(_build(pods=[pod]), "ArchiveReady")["status"] == "Unknown"


def test_autoscaled_model_reports_its_autoscaler_and_its_replicas() -> None:
    model = _model(
        autoscaling={"minReplicas": 1, "maxReplicas": 5, "metric": "inflight", "target": 8}
    )
    deployment = _deployment(ready=3)
    deployment["spec"]["replicas"] = 3  # chosen by the HPA
    result = _build(model, deployment=deployment)
    assert result["phase"] == "Ready"
    scaling = _condition(result, "ScalingActive")
    assert (scaling["status"], scaling["reason"]) == ("True", "AutoscalerConfigured")
    assert "1..5" in scaling["message"]


def test_transition_time_moves_only_when_the_status_does() -> None:
    first = _build(deployment=_deployment(ready=0))
    for condition in first["conditions"]:
        condition["lastTransitionTime"] = EARLIER
    second = _build(deployment=_deployment(ready=2), previous=first)
    assert _condition(second, "ScalingActive")["lastTransitionTime"] == EARLIER
    assert _condition(second, "Available")["lastTransitionTime"] == NOW


def test_model_version_comes_from_the_extractor_and_is_kept() -> None:
    done = {"state": {"terminated": {"exitCode": 0, "message": '{"modelVersion": "2.0"}'}}}
    first = _build(deployment=_deployment(ready=2), pods=[_pod(init=done)])
    assert first["modelVersion"] == "2.0"
    assert _build(deployment=_deployment(ready=2), previous=first)["modelVersion"] == "2.0"


def test_archive_condition_says_how_the_pods_used_the_shared_cache() -> None:
    def extracted(hit: bool) -> dict[str, Any]:
        record = ExtractedArchive(model_name="m", model_version="1", cache_hit=hit).to_json()
        return _pod(init={"state": {"terminated": {"exitCode": 0, "message": record}}})

    pods = [extracted(False), extracted(True), extracted(True)]
    result = _build(deployment=_deployment(ready=2), pods=pods)
    archive = _condition(result, "ArchiveReady")
    assert (archive["status"], archive["reason"]) == ("True", "ArchiveExtracted")
    assert archive["message"] == "the archive is unpacked; shared cache: hit in 2 of 3 pods"
    without_cache = _build(deployment=_deployment(ready=2), pods=[_pod(init=EXTRACTED)])
    assert _condition(without_cache, "ArchiveReady")["message"] == "the archive is unpacked"


def test_transitions_become_events_with_warning_for_trouble() -> None:
    before = _build(deployment=_deployment(ready=2))
    pod = _pod(init={"state": {"terminated": {"exitCode": 2, "message": "digest mismatch"}}})
    after = _build(deployment=_deployment(ready=0), pods=[pod], previous=before)
    events = {event.reason: event for event in status.transitions(before, after)}
    assert events["ArchiveFailed"].type == "Warning"
    assert "digest mismatch" in events["ArchiveFailed"].message
    assert events["Failed"].message == "phase Ready -> Failed"
    assert status.transitions(after, after) == []


def test_invalid_spec_keeps_what_runs_and_says_why() -> None:
    before = _build(deployment=_deployment(ready=2))
    result = status.blocked_status(
        reason=status.INVALID_SPEC,
        message="autoscaling.maxReplicas must be >= minReplicas",
        previous=before,
        generation=4,
        now=NOW,
    )
    assert result["phase"] == "Failed"
    progressing = _condition(result, "Progressing")
    assert (progressing["reason"], progressing["observedGeneration"]) == ("InvalidSpec", 4)
    assert _condition(result, "Available")["status"] == "True"
