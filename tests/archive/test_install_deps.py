"""`marserve install-deps`, the init container step after `marserve extract`: real archives from
torch-model-archiver, pip against a local wheel folder or a local password-protected index."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from marserve.archive import extract_archive
from marserve.contract import MODEL_PACKAGES_DIR, PACKAGE_INDEX_ENV
from support import models
from support.wheels import write_wheel


def _model_dir(tmp_path: Path, requirements: str | None) -> Path:
    handler = models.write_text(
        tmp_path / "src" / "handler.py", "def handle(data, ctx):\n    pass\n"
    )
    requirements_file = (
        models.write_text(tmp_path / "src" / "requirements.txt", requirements)
        if requirements is not None
        else None
    )
    archive = models.torch_model_archiver(
        model_name="m",
        handler=handler,
        export_path=tmp_path / "store",
        requirements_file=requirements_file,
    )
    return extract_archive(archive, tmp_path / "model")


@pytest.fixture
def offline_wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    wheels = write_wheel(
        tmp_path / "wheels", name="tinydep", version="1.0", files={"tinydep/__init__.py": ""}
    ).parent
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    return wheels


def test_it_installs_the_archive_requirements_for_the_worker(
    tmp_path: Path, offline_wheels: Path, marserve: Callable[..., Any]
) -> None:
    model_dir = _model_dir(tmp_path, "tinydep==1.0\n")
    outcome = marserve(
        "install-deps", model_dir, "--cache", tmp_path / "cache", subprocess_run=True
    )
    assert outcome.code == 0, outcome.stderr_lines
    assert (model_dir / MODEL_PACKAGES_DIR / "tinydep" / "__init__.py").is_file()
    assert outcome.termination_log == ""  # the extractor's record stays the pod's word


def test_an_archive_without_requirements_needs_nothing(
    tmp_path: Path, marserve: Callable[..., Any]
) -> None:
    model_dir = _model_dir(tmp_path, None)
    outcome = marserve("install-deps", model_dir, "--cache", tmp_path / "cache")
    assert outcome.code == 0
    assert not (model_dir / MODEL_PACKAGES_DIR).exists()
    assert not (tmp_path / "cache").exists()


def test_a_failed_install_is_one_line_with_pips_words_in_the_termination_log(
    tmp_path: Path, offline_wheels: Path, marserve: Callable[..., Any]
) -> None:
    model_dir = _model_dir(tmp_path, "tinydep==1.0\nnot-on-any-index==1.2\n")
    outcome = marserve("install-deps", model_dir, "--cache", tmp_path / "cache")
    assert outcome.code == 2
    (line,) = outcome.stderr_lines[-1:]
    assert line.startswith(
        "marserve install-deps: requirements file requirements.txt could not be installed: "
    )
    assert "No matching distribution found for not-on-any-index==1.2" in line
    assert outcome.termination_log == line + "\n"
    assert not (model_dir / MODEL_PACKAGES_DIR).exists()


def test_the_index_and_its_credentials_come_from_the_environment(
    tmp_path: Path,
    marserve: Callable[..., Any],
    serve: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PEP 503 index that answers only with the right basic-auth credentials."""
    wheel = write_wheel(
        tmp_path / "wheels", name="tinydep", version="1.0", files={"tinydep/__init__.py": ""}
    )
    expected = "Basic " + base64.b64encode(b"ci bot:p@ss:word").decode()
    seen: list[str] = []

    async def guarded(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization", ""))
        if seen[-1] != expected:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="index"'})
        if request.path == "/simple/tinydep/":
            link = f'<a href="/files/{wheel.name}">{wheel.name}</a>'
            return web.Response(text=f"<html><body>{link}</body></html>", content_type="text/html")
        return web.FileResponse(wheel)

    app = web.Application()
    app.router.add_get("/simple/tinydep/", guarded)
    app.router.add_get(f"/files/{wheel.name}", guarded)
    index = serve(app)
    model_dir = _model_dir(tmp_path, "tinydep==1.0\n")
    monkeypatch.setenv(PACKAGE_INDEX_ENV.package_index_url, f"{index.url}/simple")
    monkeypatch.setenv(PACKAGE_INDEX_ENV.package_index_username, "ci bot")
    monkeypatch.setenv(PACKAGE_INDEX_ENV.package_index_password, "p@ss:word")
    outcome = marserve(
        "install-deps", model_dir, "--cache", tmp_path / "cache", subprocess_run=True
    )
    assert outcome.code == 0, outcome.stderr_lines
    assert expected in seen
    assert (model_dir / MODEL_PACKAGES_DIR / "tinydep").is_dir()
    assert not any("p@ss" in line for line in outcome.stderr_lines)
