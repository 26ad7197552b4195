"""`marserve-operator`: runs the kopf operator with the settings read from the environment.

kopf's usual knobs are flags spelled as `kopf run` spells them (--standalone, -n/--namespace,
-A/--all-namespaces, --peering, --priority, --dev, --liveness, --verbose, --debug, --quiet,
--log-format, --log-refkey, --log-prefix); namespace flags override MARSERVE_WATCH_NAMESPACES.
The operator logs in one way, through kopf's own login with kubernetes_asyncio: the in-cluster
service account, or else the kubeconfig (KUBECONFIG or ~/.kube/config).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes_asyncio.client import Configuration

from marserve_operator import cluster, handlers, reconcile
from marserve_operator.settings import OperatorSettings, SettingsError


@dataclass(frozen=True)
class Timing:
    """kopf's and our client's timeouts; tests shorten them so stops and reconnects are quick."""

    watch_server_timeout: float = 300.0
    watch_client_timeout: float = 330.0
    connect_timeout: float = 30.0
    request_timeout: float = 60.0
    exit_timeout: float = 5.0
    retry: cluster.RetryPolicy = field(default_factory=cluster.RetryPolicy)


@kopf.on.login(registry=handlers.REGISTRY)
async def login(memo: Any, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own login through kubernetes_asyncio, which also leaves the configuration it loaded
    as the library's default: the operator's API client is built from that same configuration."""
    connection = await kopf.login_via_async_client(**kwargs)
    client: cluster.Cluster = memo.cluster
    await client.configure(Configuration.get_default_copy())
    return connection


@kopf.on.startup(registry=handlers.REGISTRY)
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    timing: Timing = memo.timing
    settings.persistence.finalizer = f"{reconcile.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=reconcile.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=reconcile.GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = True
    settings.posting.loggers = False  # only the transitions the handlers post explicitly
    settings.posting.reporting_component = "marserve-operator"
    settings.watching.server_timeout = timing.watch_server_timeout
    settings.watching.client_timeout = timing.watch_client_timeout
    settings.watching.connect_timeout = timing.connect_timeout
    settings.networking.request_timeout = timing.request_timeout
    settings.networking.connect_timeout = timing.connect_timeout
    settings.queueing.exit_timeout = timing.exit_timeout
    settings.background.instant_exit_timeout = timing.exit_timeout


@kopf.on.cleanup(registry=handlers.REGISTRY)
async def close(memo: Any, **_: Any) -> None:
    client: cluster.Cluster = memo.cluster
    await client.close()


async def run(
    *,
    settings: OperatorSettings,
    timing: Timing = Timing(),
    liveness_endpoint: str | None = None,
    peering: str | None = None,
    priority: int = 0,
    stop_flag: Any = None,
    ready_flag: Any = None,
) -> None:
    """Run the operator until the stop flag is set (or forever)."""
    memo = kopf.Memo(
        settings=settings,
        timing=timing,
        cluster=cluster.Cluster(retry=timing.retry),
        converging=handlers.ModelLocks(),
    )
    await kopf.operator(
        registry=handlers.REGISTRY,
        memo=memo,
        standalone=peering is None,
        peering_name=peering,
        priority=priority,
        clusterwide=settings.cluster_wide,
        namespaces=settings.watch_namespaces,
        liveness_endpoint=liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


# `kopf run --dev` takes over from a production operator of a lower priority.
DEV_PRIORITY = 666


class _UsageError(Exception):
    """Flags that contradict each other; argparse reports it as it reports unknown flags."""


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="marserve-operator", description=__doc__)
    parser.add_argument(
        "-L",
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="kopf's liveness endpoint (empty to disable)",
    )
    parser.add_argument("--standalone", action="store_true", help="no peering (the default)")
    parser.add_argument("-P", "--peering", help="a kopf peering name (default: standalone)")
    parser.add_argument("-p", "--priority", type=int, default=0, help="peering priority")
    parser.add_argument("--dev", action="store_true", help=f"peering priority {DEV_PRIORITY}")
    parser.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        default=[],
        help="a namespace (or pattern) to watch; repeatable; overrides MARSERVE_WATCH_NAMESPACES",
    )
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-d", "--debug", action="store_true", help="debug logging of kopf too")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument(
        "--log-format", type=str.lower, choices=["plain", "full", "json"], default="json"
    )
    parser.add_argument("--log-refkey", help="the key of the object reference in JSON logs")
    parser.add_argument("--log-prefix", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args(argv)
    try:
        _check_flags(args)
    except _UsageError as exc:
        parser.error(str(exc))
    return args


def _check_flags(args: argparse.Namespace) -> None:
    if args.namespaces and args.all_namespaces:
        raise _UsageError("either --namespace or --all-namespaces can be used, not both")
    if args.standalone and args.peering:
        raise _UsageError("either --standalone or --peering can be used, not both")


def watched_settings(settings: OperatorSettings, args: argparse.Namespace) -> OperatorSettings:
    """The environment's settings with the namespace flags applied: flags win over
    MARSERVE_WATCH_NAMESPACES, as a command line wins over the environment it runs in."""
    if args.all_namespaces:
        return dataclasses.replace(settings, watch_namespaces=())
    if args.namespaces:
        return dataclasses.replace(settings, watch_namespaces=tuple(dict.fromkeys(args.namespaces)))
    return settings


def _check_login() -> None:
    """The same login kopf will run, tried once up front, so a process with no cluster to talk
    to says so in one line (naming the kubeconfig it looked for) instead of retrying forever."""
    library = logging.getLogger("kubernetes_asyncio.config.kube_config")
    level, library.level = library.level, logging.ERROR  # its "not found" is in our one line
    try:
        login = kopf.login_via_async_client(
            logger=logging.getLogger(__name__), settings=kopf.OperatorSettings()
        )
        asyncio.run(login)
    finally:
        library.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    kopf.configure(
        verbose=args.verbose,
        debug=args.debug,
        quiet=args.quiet,
        log_format=kopf.LogFormat[args.log_format.upper()],
        log_refkey=args.log_refkey,
        log_prefix=args.log_prefix,
    )
    try:
        settings = watched_settings(OperatorSettings.from_env(os.environ), args)
    except SettingsError as exc:
        print(f"marserve-operator: {exc}", file=sys.stderr)
        return 2
    try:
        _check_login()
    except kopf.LoginError as exc:
        kubeconfig = os.environ.get("KUBECONFIG") or "~/.kube/config"
        print(
            f"marserve-operator: no Kubernetes API to talk to: {exc} (kubeconfig: {kubeconfig})",
            file=sys.stderr,
        )
        return 2
    logging.getLogger(__name__).info("watching %s", settings.watch_namespaces or "all namespaces")
    asyncio.run(
        run(
            settings=settings,
            liveness_endpoint=args.liveness or None,
            peering=args.peering,
            priority=DEV_PRIORITY if args.dev else args.priority,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
