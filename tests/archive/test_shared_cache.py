"""The shared archive cache: replicas starting together download and unpack once.

Real `marserve extract --shared` processes race on one directory of a temporary folder (standing
in for the ReadWriteMany volume), fetching from a local server that counts downloads.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from marserve.archive.extract import STAGING_PREFIX
from marserve.contract import EXTRACT_ENV, ExtractedArchive
from marserve.manifest import MANIFEST_PATH
from support import object_stores

REPLICAS = 4
MARSERVE = Path(sys.executable).with_name("marserve")


def _slow_archive_server(body: bytes, hits: list[str]) -> web.Application:
    """Sends the archive in pieces with pauses, so every replica starts before the first ends."""

    async def archive(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        response = web.StreamResponse()
        response.content_length = len(body)
        await response.prepare(request)
        step = len(body) // 8 + 1
        for start in range(0, len(body), step):
            await response.write(body[start : start + step])
            await asyncio.sleep(0.1)
        return response

    app = web.Application()
    app.router.add_get("/m.mar", archive)
    return app


def test_concurrent_replicas_fill_the_cache_once(
    serve: Callable[..., Any], tmp_path: Path, read_tree: Callable[[Path], dict[str, bytes]]
) -> None:
    body = object_stores.model_archive(512 * 1024)
    digest = hashlib.sha256(body).hexdigest()
    hits: list[str] = []
    url = f"{serve(_slow_archive_server(body, hits)).url}/m.mar"
    cache = tmp_path / "cache"
    dest = cache / digest
    logs = [tmp_path / f"termination-log-{n}" for n in range(REPLICAS)]
    processes = []
    for log in logs:
        log.write_text("")
        env = {**os.environ, EXTRACT_ENV.termination_log: str(log)}
        command = [str(MARSERVE), "extract", url, str(dest), "--shared", "--sha256", digest]
        processes.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True))
    errors = [process.communicate(timeout=60)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * REPLICAS, errors
    assert hits == ["/m.mar"]
    records = [ExtractedArchive.from_json(log.read_text()) for log in logs]
    assert sorted(record.cache_hit for record in records if record) == [False] + [True] * 3
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert read_tree(dest)["weights.bin"] == archive.read("weights.bin")
    assert (dest / MANIFEST_PATH).is_file()
    assert sorted(path.name for path in cache.iterdir()) == [f".{digest}.lock", digest]
    assert not list(cache.glob(f"{STAGING_PREFIX}*"))


def test_a_filled_cache_is_a_hit_without_a_download(
    marserve: Callable[..., Any], real_mars: dict[str, Path], tmp_path: Path
) -> None:
    archive = real_mars["default"]
    dest = tmp_path / "cache" / "model"
    first = marserve("extract", archive, dest, "--shared")
    assert first.code == 0, first.stderr_lines
    assert ExtractedArchive.from_json(first.termination_log).cache_hit is False  # type: ignore[union-attr]
    archive_copy = tmp_path / "gone.mar"  # a hit reads nothing: the source may be unreachable
    again = marserve("extract", archive_copy, dest, "--shared")
    assert again.code == 0, again.stderr_lines
    assert ExtractedArchive.from_json(again.termination_log).cache_hit is True  # type: ignore[union-attr]
    assert f"found {archive_copy} in the shared cache at {dest}" in again.stderr_lines


def test_an_incomplete_directory_in_the_cache_is_replaced(
    marserve: Callable[..., Any], real_mars: dict[str, Path], tmp_path: Path
) -> None:
    dest = tmp_path / "cache" / "model"
    dest.mkdir(parents=True)
    (dest / "half-written.bin").write_bytes(b"x")
    outcome = marserve("extract", real_mars["default"], dest, "--shared")
    assert outcome.code == 0, outcome.stderr_lines
    assert not (dest / "half-written.bin").exists()
    assert (dest / MANIFEST_PATH).is_file()


def test_a_failed_fill_leaves_the_cache_empty_for_the_next_replica(
    marserve: Callable[..., Any],
    clean_failure: Callable[..., None],
    real_mars: dict[str, Path],
    tmp_path: Path,
) -> None:
    dest = tmp_path / "cache" / "model"
    failed = marserve("extract", real_mars["default"], dest, "--shared", "--sha256", "ab" * 32)
    clean_failure(failed, dest, expect="expected abab")
    retried = marserve("extract", real_mars["default"], dest, "--shared")
    assert retried.code == 0, retried.stderr_lines


def test_shared_and_force_exclude_each_other(
    marserve: Callable[..., Any], real_mars: dict[str, Path], tmp_path: Path
) -> None:
    try:
        code = marserve("extract", real_mars["default"], tmp_path / "m", "--shared", "--force").code
    except SystemExit as exit_:
        code = int(str(exit_.code))
    assert code == 2
