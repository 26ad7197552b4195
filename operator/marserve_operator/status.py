"""InferenceModel status, derived from what the cluster reports about the model's pods.

Pure functions: the Deployment and its Pods go in, the status dict goes out, so every failure a
user can hit (a bad archive, an image that cannot be pulled, no GPU node, a crash-looping worker)
is a tested mapping to a phase and a condition with a reason and the cluster's own message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from marserve_operator.pod_findings import PodFindings, inspect_pods
from marserve_operator.spec import ModelSpec

CONDITION_TYPES: Final = ("ArchiveReady", "Available", "Progressing", "ScalingActive")
# Present only while the model has a canary.
CANARY_CONDITION: Final = "CanaryReady"
INVALID_SPEC: Final = "InvalidSpec"
OWNERSHIP_CONFLICT: Final = "OwnershipConflict"
HTTP_ADD_ON_MISSING: Final = "HTTPAddOnMissing"
_ADD_ON_MISSING_MESSAGE: Final = (
    "minReplicas 0 needs the KEDA HTTP add-on (http.keda.sh/v1alpha1) to start the first pod "
    "when a request arrives; install it (helm install http-add-on kedacore/keda-add-ons-http "
    "--namespace keda) or set minReplicas to 1. Until then nothing scales the model."
)

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Transition:
    """A change worth a Kubernetes Event on the InferenceModel."""

    type: str  # Normal or Warning
    reason: str
    message: str


WARNING_REASONS: Final = frozenset(
    {
        "ArchiveFailed",
        "DependencyInstallFailed",
        "ImagePullError",
        "Unschedulable",
        "WorkerCrashLooping",
        "ProgressDeadlineExceeded",
        INVALID_SPEC,
        OWNERSHIP_CONFLICT,
        HTTP_ADD_ON_MISSING,
    }
)


def desired_replicas(model: ModelSpec, deployment: Mapping[str, Any] | None) -> int:
    """The replicas asked for: the spec's, or the autoscaler's current choice when it owns them."""
    if model.autoscaling is None:
        return model.replicas
    spec_replicas = ((deployment or {}).get("spec") or {}).get("replicas")
    return int(spec_replicas) if spec_replicas is not None else model.autoscaling.min_replicas


@dataclass(frozen=True)
class _Conditions:
    """Builds conditions against the previous status, so unchanged ones keep their time."""

    previous: Mapping[str, Any]
    now: str
    generation: int | None

    def make(self, type_: str, status: str, reason: str, message: str) -> JsonObject:
        conditions = self.previous.get("conditions") or []
        old = next((c for c in conditions if c.get("type") == type_), None)
        unchanged = old is not None and old.get("status") == status
        condition: JsonObject = {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": old["lastTransitionTime"] if unchanged and old else self.now,
        }
        if self.generation is not None:
            condition["observedGeneration"] = self.generation
        return condition


@dataclass(frozen=True)
class _Rollout:
    """The Deployment's numbers, read once."""

    ready: int
    updated: int
    replicas: int
    desired: int
    complete: bool
    stalled_message: str | None


def _rollout(model: ModelSpec, deployment: Mapping[str, Any] | None) -> _Rollout:
    observed = (deployment or {}).get("status") or {}
    ready = int(observed.get("readyReplicas") or 0)
    updated = int(observed.get("updatedReplicas") or 0)
    desired = desired_replicas(model, deployment)
    generation = int(((deployment or {}).get("metadata") or {}).get("generation") or 1)
    seen = int(observed.get("observedGeneration") or 0) >= generation
    progress: Mapping[str, Any] = next(
        (c for c in observed.get("conditions") or [] if c.get("type") == "Progressing"), {}
    )
    stalled = progress.get("reason") == "ProgressDeadlineExceeded"
    return _Rollout(
        ready=ready,
        updated=updated,
        replicas=int(observed.get("replicas") or 0),
        desired=desired,
        complete=deployment is not None and seen and min(updated, ready) >= desired,
        stalled_message=str(progress.get("message") or "") if stalled else None,
    )


def _archive_condition(found: PodFindings, rollout: _Rollout, make: _Conditions) -> JsonObject:
    if found.archive_failure:
        failure = found.archive_failure
        return make.make("ArchiveReady", "False", failure.reason, failure.message)
    if found.archive_extracted or rollout.ready:
        message = "the archive is unpacked" + _cache_note(found)
        return make.make("ArchiveReady", "True", "ArchiveExtracted", message)
    if found.installing_dependencies:
        message = "installing the archive's requirementsFile"
        return make.make("ArchiveReady", "Unknown", "InstallingDependencies", message)
    if found.extracting:
        return make.make("ArchiveReady", "Unknown", "Extracting", "extracting the archive")
    return make.make("ArchiveReady", "Unknown", "Pending", "no pod has the archive yet")


def _cache_note(found: PodFindings) -> str:
    """How the pods' init containers used the shared archive cache, when the model has one."""
    pods = found.cache_hits + found.cache_fills
    if not pods:
        return ""
    return f"; shared cache: hit in {found.cache_hits} of {pods} pods"


def _available_condition(found: PodFindings, rollout: _Rollout, make: _Conditions) -> JsonObject:
    problem = found.archive_failure or found.crash_loop or found.image_pull or found.unschedulable
    if rollout.ready and rollout.desired:
        message = f"{rollout.ready}/{rollout.desired} replicas ready"
        if problem and rollout.ready < rollout.desired:  # say why the rest are not
            message += f"; {problem.reason}: {problem.message}"
        return make.make("Available", "True", "MinimumReplicasAvailable", message)
    if problem:
        return make.make("Available", "False", problem.reason, problem.message)
    if rollout.desired == 0:
        return make.make("Available", "False", "ScaledToZero", "no replicas are asked for")
    if found.loading:
        return make.make("Available", "False", "Loading", "the worker is loading the model")
    return make.make("Available", "False", "Pending", "waiting for worker pods")


def _progressing_condition(rollout: _Rollout, make: _Conditions) -> JsonObject:
    if rollout.stalled_message is not None:
        return make.make(
            "Progressing", "False", "ProgressDeadlineExceeded", rollout.stalled_message
        )
    if rollout.complete:
        message = f"{rollout.ready}/{rollout.desired} replicas up to date"
        return make.make("Progressing", "False", "RolloutComplete", message)
    message = f"{rollout.updated}/{rollout.desired} replicas updated"
    return make.make("Progressing", "True", "RollingOut", message)


def _scaling_condition(
    model: ModelSpec, make: _Conditions, *, request_host: str | None, http_add_on_missing: bool
) -> JsonObject:
    scaling = model.autoscaling
    if scaling is None:
        message = f"fixed at {model.replicas} replicas"
        return make.make("ScalingActive", "False", "AutoscalingDisabled", message)
    if http_add_on_missing:
        return make.make("ScalingActive", "False", HTTP_ADD_ON_MISSING, _ADD_ON_MISSING_MESSAGE)
    engine = scaling.engine if request_host is None else "keda http add-on"
    message = (
        f"{engine} scales {scaling.min_replicas}..{scaling.max_replicas} replicas "
        f"on {scaling.metric} (target {scaling.target:g})"
    )
    if request_host is not None:
        message += f"; send requests to status.url with the header Host: {request_host}"
    return make.make("ScalingActive", "True", "AutoscalerConfigured", message)


def _phase(found: PodFindings, rollout: _Rollout) -> str:
    if found.archive_failure:
        return "Failed"
    if rollout.ready:
        return "Ready" if rollout.ready >= rollout.desired else "Degraded"
    if found.crash_loop or found.image_pull or rollout.stalled_message is not None:
        return "Failed"
    if found.loading:
        return "Loading"
    return "Extracting" if found.extracting or found.installing_dependencies else "Pending"


@dataclass(frozen=True)
class CanaryObservation:
    """The canary revision as the cluster shows it, and how requests reach it."""

    model: ModelSpec  # the canary revision's ModelSpec
    deployment: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]]
    split: str  # HTTPRoute or Replicas
    weight: int  # percent of requests routed to it now (0 until it is ready)
    # The stable replicas while the canary runs; None when an autoscaler decides them.
    stable_replicas: int | None = None


def deployment_ready(model: ModelSpec, deployment: Mapping[str, Any] | None) -> bool:
    """Whether every asked-for replica of the revision is updated and ready."""
    rollout = _rollout(model, deployment)
    return rollout.desired > 0 and rollout.complete


def _canary_condition(canary: CanaryObservation, make: _Conditions) -> JsonObject:
    rollout = _rollout(canary.model, canary.deployment)
    found = inspect_pods(canary.pods)
    problem = found.archive_failure or found.crash_loop or found.image_pull or found.unschedulable
    if rollout.desired == 0:
        message = "trafficPercent is 0: no canary pods run"
        return make.make(CANARY_CONDITION, "False", "NoTraffic", message)
    if deployment_ready(canary.model, canary.deployment):
        message = f"{rollout.ready}/{rollout.desired} canary replicas ready"
        return make.make(CANARY_CONDITION, "True", "CanaryReady", message)
    if problem:
        message = f"the canary takes no traffic until it is ready: {problem.message}"
        return make.make(CANARY_CONDITION, "False", problem.reason, message)
    reason = "Loading" if found.loading else "Pending"
    message = f"{rollout.ready}/{rollout.desired} canary replicas ready; it takes no traffic yet"
    return make.make(CANARY_CONDITION, "False", reason, message)


def _revisions(model: ModelSpec, stable: _Rollout, canary: CanaryObservation) -> list[JsonObject]:
    """Both revisions with their readiness and the share of requests each gets now: the
    route's weights, or the ready pods' proportion behind the one Service."""
    canary_rollout = _rollout(canary.model, canary.deployment)
    share = canary.weight
    if canary.split == "Replicas" and canary.weight > 0:
        ready = stable.ready + canary_rollout.ready
        share = round(100 * canary_rollout.ready / ready) if ready else 0
    return [
        {
            "revision": revision.revision,
            "archive": revision.archive.uri,
            "replicas": numbers.replicas,
            "readyReplicas": numbers.ready,
            "trafficPercent": percent,
        }
        for revision, numbers, percent in (
            (model, stable, 100 - share),
            (canary.model, canary_rollout, share),
        )
    ]


def build_status(
    *,
    model: ModelSpec,
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    previous: Mapping[str, Any],
    now: str,
    url: str,
    selector: str,
    request_host: str | None = None,
    http_add_on_missing: bool = False,
    canary: CanaryObservation | None = None,
) -> JsonObject:
    """The full status of one InferenceModel from its Deployment and Pods. `request_host` is
    the Host header clients must send to `url` when a proxy routes by it (scale from zero)."""
    found = inspect_pods(pods)
    stable = model
    if canary is not None and canary.stable_replicas is not None:
        stable = dataclasses.replace(model, replicas=canary.stable_replicas)
    rollout = _rollout(stable, deployment)
    make = _Conditions(previous=previous, now=now, generation=model.generation)
    status: JsonObject = {
        "phase": _phase(found, rollout),
        "conditions": [
            _archive_condition(found, rollout, make),
            _available_condition(found, rollout, make),
            _progressing_condition(rollout, make),
            _scaling_condition(
                model, make, request_host=request_host, http_add_on_missing=http_add_on_missing
            ),
        ],
        "replicas": rollout.replicas,
        "readyReplicas": rollout.ready,
        "selector": selector,
        "url": url,
        # None, written as a merge patch, removes what a model no longer has (a host left from
        # scaling from zero, the revisions of a canary promoted or rolled back).
        "host": request_host,
        "revisions": None if canary is None else _revisions(model, rollout, canary),
        "trafficSplit": None if canary is None else canary.split,
    }
    if canary is not None:
        status["conditions"].append(_canary_condition(canary, make))
    if model.generation is not None:
        status["observedGeneration"] = model.generation
    version = found.model_version or previous.get("modelVersion")
    if version:
        status["modelVersion"] = version
    return status


def blocked_status(
    *,
    reason: str,
    message: str,
    previous: Mapping[str, Any],
    generation: int | None,
    now: str,
) -> JsonObject:
    """A model the operator cannot roll out (an invalid spec, a name taken by another
    controller's object): Failed with the reason; what already runs is left alone."""
    kept = [c for c in previous.get("conditions") or [] if c.get("type") != "Progressing"]
    make = _Conditions(previous=previous, now=now, generation=generation)
    progressing = make.make("Progressing", "False", reason, message)
    status: JsonObject = {"phase": "Failed", "conditions": [*kept, progressing]}
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def transitions(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[Transition]:
    """Events for a new phase and for each condition whose status or reason changed."""
    events: list[Transition] = []
    before = {c.get("type"): c for c in previous.get("conditions") or []}
    for cond in current.get("conditions") or []:
        old = before.get(cond["type"]) or {}
        if (old.get("status"), old.get("reason")) != (cond["status"], cond.get("reason")):
            kind = "Warning" if cond.get("reason") in WARNING_REASONS else "Normal"
            message = f"{cond['type']} is {cond['status']}: {cond.get('message', '')}"
            events.append(Transition(kind, str(cond.get("reason")), message))
    if previous.get("phase") != current.get("phase"):
        kind = "Warning" if current.get("phase") in {"Failed", "Degraded"} else "Normal"
        message = f"phase {previous.get('phase') or 'none'} -> {current.get('phase')}"
        events.append(Transition(kind, str(current.get("phase")), message))
    return events
