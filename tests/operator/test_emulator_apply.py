"""Server-side apply as the emulator does it, checked directly: the operator tests lean on these
semantics (its repairs and its "nothing to do" passes) but only see them through the operator."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from support import server_side_apply
from support.operator_harness import NAMESPACE
from support.running_emulator import RunningEmulator

CONFIG_MAPS = f"/api/v1/namespaces/{NAMESPACE}/configmaps"


def config_map(name: str, *, data: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "data": data,
    }


def apply(api: RunningEmulator, obj: dict[str, Any], *, manager: str = "tests") -> dict[str, Any]:
    path = f"{CONFIG_MAPS}/{obj['metadata']['name']}?fieldManager={manager}&force=true"
    content_type = server_side_apply.APPLY_CONTENT_TYPE
    result: dict[str, Any] = api.request("PATCH", path, obj, content_type=content_type)
    return result


def test_a_field_the_manager_no_longer_applies_is_removed_and_others_keep_theirs() -> None:
    ours = config_map("m", data={"a": "1", "b": "2"}, labels={"app": "m", "tier": "web"})
    stored = server_side_apply.apply(None, ours, manager="operator")
    stored["metadata"]["annotations"] = {"kept": "yes"}  # written by someone else, not applied

    without_b = config_map("m", data={"a": "1"}, labels={})
    del without_b["metadata"]["labels"]
    result = server_side_apply.apply(stored, without_b, manager="operator")

    assert result["data"] == {"a": "1"}
    assert not result["metadata"].get("labels")
    assert result["metadata"]["annotations"] == {"kept": "yes"}
    assert stored["data"] == {"a": "1", "b": "2"}  # the stored object itself is left alone
    assert stored["metadata"]["labels"] == {"app": "m", "tier": "web"}
    (entry,) = result["metadata"]["managedFields"]
    assert entry["fieldsV1"] == {
        "f:apiVersion": {},
        "f:kind": {},
        "f:data": {"f:a": {}},
        "f:metadata": {"f:name": {}, "f:namespace": {}},
    }


def test_another_managers_fields_survive_an_apply_that_does_not_name_them() -> None:
    stored = server_side_apply.apply(
        None, config_map("m", data={"a": "1"}, labels={}), manager="operator"
    )
    stored = server_side_apply.apply(
        stored, config_map("m", data={"scaled": "3"}, labels={}), manager="autoscaler"
    )
    result = server_side_apply.apply(
        stored, config_map("m", data={"a": "2"}, labels={}), manager="operator"
    )
    assert result["data"] == {"a": "2", "scaled": "3"}
    managers = [m["manager"] for m in result["metadata"]["managedFields"]]
    assert managers == ["autoscaler", "operator"]


def test_a_dropped_field_is_removed_over_http_with_a_new_version(api: RunningEmulator) -> None:
    first = apply(api, config_map("dropped", data={"a": "1"}, labels={"app": "x", "gone": "y"}))
    second = apply(api, config_map("dropped", data={"a": "1"}, labels={"app": "x"}))

    assert second["metadata"]["labels"] == {"app": "x"}
    assert api.get(f"{CONFIG_MAPS}/dropped") == second
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


async def test_an_apply_that_changes_nothing_bumps_no_version_and_sends_no_event(
    api: RunningEmulator,
) -> None:
    unchanged = config_map("unchanged", data={"a": "1"}, labels={"app": "u"})
    first = await asyncio.to_thread(apply, api, unchanged)
    since = first["metadata"]["resourceVersion"]
    watch_url = f"{api.url}{CONFIG_MAPS}?watch=true&resourceVersion={since}"
    async with aiohttp.ClientSession() as session, session.get(watch_url) as watch:
        # An object made after `since` reaches the watch whether it subscribed before or after
        # the make (by replay), so its event proves the watch now sees every change.
        await asyncio.to_thread(apply, api, config_map("marker", data={}, labels={}))
        assert (await next_event(watch))["object"]["metadata"]["name"] == "marker"

        again = await asyncio.to_thread(apply, api, unchanged)
        changed = await asyncio.to_thread(
            apply, api, config_map("unchanged", data={"a": "2"}, labels={"app": "u"})
        )
        event = await next_event(watch)

    assert again == first
    assert api.get(f"{CONFIG_MAPS}/unchanged") == changed
    assert event["type"] == "MODIFIED"
    assert event["object"]["metadata"]["resourceVersion"] == changed["metadata"]["resourceVersion"]
    assert event["object"]["data"] == {"a": "2"}


async def next_event(watch: aiohttp.ClientResponse) -> dict[str, Any]:
    while True:
        line = await asyncio.wait_for(watch.content.readline(), timeout=10)
        if line.strip():
            event: dict[str, Any] = json.loads(line)
            return event
