"""Per-model requirements (`requirementsFile`) served for real: archives from the real
torch-model-archiver whose handler imports a package that only their requirements install, from
a local wheel folder (no network)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from marserve.contract import MODEL_PACKAGES_DIR
from support import models
from support.serving import RunningServer, start_server, stop_server
from support.wheels import write_wheel

# The handler can only be imported where `tinydep`, its model's requirement, was installed.
HANDLER = """
import tinydep


def handle(data, context):
    if data is None:
        return None
    return [{"scale": tinydep.SCALE, "from": tinydep.__file__} for _ in data]
"""


def _archive(root: Path, *, name: str, requirements: str) -> Path:
    handler = models.write_text(root / name / "tinydep_handler.py", HANDLER)
    requirements_file = models.write_text(root / name / "requirements.txt", requirements)
    return models.torch_model_archiver(
        model_name=name,
        handler=handler,
        export_path=root / "store",
        requirements_file=requirements_file,
    )


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("model-packages")
    wheels = root / "wheels"
    write_wheel(wheels, name="tinydep", version="1.0", files={"tinydep/__init__.py": "SCALE = 3\n"})
    return {
        "root": root,
        "wheels": wheels,
        "good": _archive(root, name="good", requirements="tinydep==1.0\n"),
        "broken": _archive(root, name="broken", requirements="no-such-package-anywhere==9.9\n"),
    }


def _offline_pip(wheels: Path) -> dict[str, str]:
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}


def _serve(
    workdir: Path, *, archives: Mapping[str, Path], extra_args: list[str], env: dict[str, str]
) -> RunningServer:
    return start_server(
        workdir,
        model_args=[f"{name}={path}" for name, path in archives.items()],
        extra_args=extra_args,
        env=env,
        wait_ready=False,
    )


async def _settled(session: aiohttp.ClientSession, server: RunningServer, model: str) -> Any:
    """The model's description once it has left LOADING."""
    for _ in range(900):
        async with session.get(f"{server.management}/models/{model}") as response:
            (described,) = await response.json()
        if described["status"] != "LOADING":
            return described
        await asyncio.sleep(0.1)
    raise AssertionError(f"{model} never finished loading:\n{server.log()}")


async def _predict(session: aiohttp.ClientSession, server: RunningServer, model: str) -> Any:
    async with session.post(f"{server.inference}/predictions/{model}", data=b"x") as response:
        return response.status, await response.json()


async def test_installed_requirements_serve_and_a_broken_one_fails_only_its_model(
    kit: dict[str, Path],
) -> None:
    cache = kit["root"] / "cache"
    workdir = kit["root"] / "first"
    server = _serve(
        workdir,
        archives={"good": kit["good"], "broken": kit["broken"]},
        extra_args=["--install-model-deps", "--model-packages-cache", str(cache)],
        env=_offline_pip(kit["wheels"]),
    )
    try:
        async with aiohttp.ClientSession() as session:
            assert (await _settled(session, server, "good"))["status"] == "READY"
            status, answer = await _predict(session, server, "good")
            assert status == 200, answer
            assert answer["scale"] == 3
            # From the model's own folder, a link into the cache, not the server's environment.
            assert f"/{MODEL_PACKAGES_DIR}/tinydep/" in answer["from"]
            assert list(cache.glob("*/*/*/tinydep/__init__.py"))

            broken = await _settled(session, server, "broken")
            assert broken["status"] == "FAILED"
            assert "requirements.txt could not be installed" in broken["failure"]
            assert (
                "No matching distribution found for no-such-package-anywhere" in (broken["failure"])
            )
            status, body = await _predict(session, server, "broken")
            assert status == 503
            assert body["type"] == "ModelLoadFailed"
            assert "no-such-package-anywhere" in body["message"]
            assert (await _predict(session, server, "good"))[0] == 200
    finally:
        stop_server(server)
    with pytest.raises(ImportError):
        __import__("tinydep")  # never installed into the test's (and server's) environment


async def test_a_second_start_reuses_the_installed_packages_without_pip(
    kit: dict[str, Path],
) -> None:
    cache = kit["root"] / "reuse-cache"
    args = ["--install-model-deps", "--model-packages-cache", str(cache)]
    wheels = kit["root"] / "reuse-wheels"
    shutil.copytree(kit["wheels"], wheels)
    for attempt in ("first", "second"):
        server = _serve(
            kit["root"] / f"reuse-{attempt}",
            archives={"good": kit["good"]},
            extra_args=args,
            env=_offline_pip(wheels),
        )
        try:
            async with aiohttp.ClientSession() as session:
                assert (await _settled(session, server, "good"))["status"] == "READY"
                assert (await _predict(session, server, "good"))[0] == 200
        finally:
            stop_server(server)
        # The second start has nothing pip could install from: it answers only through reuse.
        shutil.rmtree(wheels)
        wheels.mkdir()
    log = server.log()
    assert "reusing the packages of" in log and "installing" not in log


async def test_without_the_flag_the_requirements_are_ignored_and_the_model_fails(
    kit: dict[str, Path],
) -> None:
    server = _serve(
        kit["root"] / "off",
        archives={"good": kit["good"]},
        extra_args=["--model-packages-cache", str(kit["root"] / "off-cache")],
        env=_offline_pip(kit["wheels"]),
    )
    try:
        async with aiohttp.ClientSession() as session:
            described = await _settled(session, server, "good")
    finally:
        stop_server(server)
    assert described["status"] == "FAILED"
    assert "No module named 'tinydep'" in described["failure"]
    assert "requirements file requirements.txt is ignored; pass --install-model-deps" in (
        server.log()
    )
    assert not (kit["root"] / "off-cache").exists()


async def test_a_model_directory_with_installed_packages_needs_no_flag(
    kit: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in a pod: `marserve install-deps` ran in the init container, and the worker container,
    started without the flag, finds the packages in the model directory."""
    from marserve.archive import extract_archive
    from marserve.model_packages import install_requirements

    for name, value in _offline_pip(kit["wheels"]).items():
        monkeypatch.setenv(name, value)
    model_dir = extract_archive(kit["good"], tmp_path / "model")
    install_requirements(
        model_dir, requirements=model_dir / "requirements.txt", cache=tmp_path / "cache"
    )
    assert (model_dir / MODEL_PACKAGES_DIR / "tinydep" / "__init__.py").is_file()
    server = _serve(tmp_path / "serve", archives={"good": model_dir}, extra_args=[], env={})
    try:
        async with aiohttp.ClientSession() as session:
            assert (await _settled(session, server, "good"))["status"] == "READY"
            assert (await _predict(session, server, "good"))[0] == 200
    finally:
        stop_server(server)
    assert "is ignored" not in server.log()
