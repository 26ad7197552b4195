"""Workload identity: the cloud credentials a pod gets from its Kubernetes service account.

When a model asks for workload identity (`spec.archive.identity: workload`), the operator sets
`MARSERVE_ARCHIVE_IDENTITY=workload` on the init container. The cloud's webhook is then expected
to have injected its variables; if it has not, the service account lacks its annotation, and
saying so beats the provider chain's silent fallback to anonymous or node credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from marserve.archive.errors import ArchiveError
from marserve.contract import ARCHIVE_IDENTITY_WORKLOAD, EXTRACT_ENV

# Per scheme: the variable sets any one of which means the webhook did its part, and the fix.
WORKLOAD_ENV: Final[Mapping[str, tuple[tuple[str, ...], ...]]] = {
    # IRSA, then EKS Pod Identity.
    "s3": (
        ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI",),
    ),
    "az": (("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"),),
}
_FIX: Final[Mapping[str, str]] = {
    "s3": "annotate the model's service account with eks.amazonaws.com/role-arn",
    "az": (
        "annotate the model's service account with azure.workload.identity/client-id and "
        "install the Azure workload identity webhook"
    ),
}


def wants_workload_identity(env: Mapping[str, str]) -> bool:
    return env.get(EXTRACT_ENV.archive_identity) == ARCHIVE_IDENTITY_WORKLOAD


def check_workload_env(env: Mapping[str, str], scheme: str) -> None:
    """Raises when workload identity is asked for but its variables are missing.

    GKE's workload identity has no variables (the metadata server answers); its check is that
    Google's chain finds metadata-server credentials.
    """
    if not wants_workload_identity(env) or scheme not in WORKLOAD_ENV:
        return
    options = WORKLOAD_ENV[scheme]
    if any(all(env.get(name) for name in names) for names in options):
        return
    wanted = " or ".join(" + ".join(names) for names in options)
    raise ArchiveError(
        f"workload identity for {scheme}:// needs {wanted} in the pod; {_FIX[scheme]}"
    )
