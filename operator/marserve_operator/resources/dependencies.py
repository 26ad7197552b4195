"""What the pod needs to install an archive's requirementsFile: where the packages live and how
pip reaches the package index. Pure data; `workload` builds the init container from it."""

from __future__ import annotations

from typing import Any, Final

from marserve.contract import PACKAGE_INDEX_ENV
from marserve_operator.spec import Dependencies

# The cache `marserve install-deps` fills; the model directory links into it, so the worker mounts
# it at the same path. Kept apart from the model volume, a rerun of the init containers after
# `extract --force` finds it filled and does not run pip again.
PACKAGES_DIR: Final = "/mnt/model-packages"
INSTALL_DEPS_CONTAINER: Final = "install-deps"


def package_index_env(dependencies: Dependencies) -> list[dict[str, Any]]:
    """The index URLs as values, the credentials as references to the Secret's keys."""
    env: list[dict[str, Any]] = [
        {"name": name, "value": value}
        for name, value in (
            (PACKAGE_INDEX_ENV.package_index_url, dependencies.index_url),
            (PACKAGE_INDEX_ENV.package_extra_index_url, dependencies.extra_index_url),
        )
        if value
    ]
    if dependencies.secret_name:
        env += [
            {
                "name": name,
                "valueFrom": {"secretKeyRef": {"name": dependencies.secret_name, "key": key}},
            }
            for name, key in (
                (PACKAGE_INDEX_ENV.package_index_username, "username"),
                (PACKAGE_INDEX_ENV.package_index_password, "password"),
            )
        ]
    return env
