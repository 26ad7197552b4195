"""Fixtures for archive tests: real model inputs, real MARs, the extract CLI and local servers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from marserve import cli
from marserve.archive.extract import STAGING_PREFIX
from marserve.contract import EXTRACT_ENV
from support import models, object_stores

MARSERVE = Path(sys.executable).with_name("marserve")
HANDLER_SOURCE = """
    import torch
    from ts.torch_handler.base_handler import BaseHandler


    class MLPHandler(BaseHandler):
        \"\"\"Rows of 8 numbers in (JSON), 4 scores out.\"\"\"

        def preprocess(self, data):
            return torch.tensor([row["body"] for row in data], dtype=torch.float32)

        def postprocess(self, data):
            return data.tolist()
"""


@dataclass(frozen=True)
class ModelInputs:
    """The files one model archive is built from, as the archiver flags name them."""

    model_file: Path
    serialized_file: Path
    handler: Path
    extra_files: tuple[Path, ...]
    requirements_file: Path
    config_file: Path


@pytest.fixture(scope="session")
def model_inputs(tmp_path_factory: pytest.TempPathFactory) -> ModelInputs:
    """An eager MLP with a custom handler, an extra file and an extra directory tree."""
    root = tmp_path_factory.mktemp("inputs")
    model_file, weights = models.write_eager(models.make_mlp(), root)
    handler = models.write_text(root / "mlp_handler.py", HANDLER_SOURCE)
    labels = models.write_json(root / "index_to_name.json", {"0": "a", "1": "b"})
    extras = root / "assets"
    models.write_text(extras / "vocab.txt", "hello\nworld\n")
    models.write_text(extras / "nested" / "deep.txt", "deep")
    models.write_text(extras / ".hidden_dir" / "skipped.txt", "left out")
    models.write_text(extras / "__pycache__" / "skipped.pyc", "left out")
    models.write_text(extras / ".dotfile", "kept: only hidden directories are left out")
    for name in ("a.md", "b.md"):
        models.write_text(root / "docs" / name, f"# {name}")
    return ModelInputs(
        model_file=model_file,
        serialized_file=weights,
        handler=handler,
        extra_files=(labels, extras, root / "docs" / "*.md"),
        requirements_file=models.write_text(root / "requirements.txt", "numpy\n"),
        config_file=models.write_text(root / "model-config.yaml", "batchSize: 4\n"),
    )


@pytest.fixture(scope="session")
def real_mars(
    model_inputs: ModelInputs, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The same model archived by the real torch-model-archiver in each of its four formats."""
    built = {}
    for archive_format in ("default", "zip-store", "tgz", "no-archive"):
        built[archive_format] = models.torch_model_archiver(
            model_name="mlp",
            handler=model_inputs.handler,
            export_path=tmp_path_factory.mktemp(f"real-{archive_format}"),
            serialized_file=model_inputs.serialized_file,
            model_file=model_inputs.model_file,
            extra_files=model_inputs.extra_files,
            requirements_file=model_inputs.requirements_file,
            config_file=model_inputs.config_file,
            archive_format=archive_format,
        )
    return built


@pytest.fixture(scope="session")
def archive_flags(model_inputs: ModelInputs) -> list[str]:
    """`marserve archive` flags for the same inputs the real archiver gets."""
    inputs = model_inputs
    return [
        "--model-name",
        "mlp",
        "--version",
        "1.0",
        "--handler",
        str(inputs.handler),
        "--serialized-file",
        str(inputs.serialized_file),
        "--model-file",
        str(inputs.model_file),
        "--extra-files",
        ",".join(str(path) for path in inputs.extra_files),
        "--requirements-file",
        str(inputs.requirements_file),
        "--config-file",
        str(inputs.config_file),
    ]


@dataclass(frozen=True)
class Outcome:
    """What one `marserve` run left behind: exit code, stderr lines, termination log text."""

    code: int
    stderr_lines: list[str]
    termination_log: str


CliRunner = Callable[..., Outcome]


@pytest.fixture
def termination_log(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """An existing termination-log file, as Kubernetes provides at /dev/termination-log."""
    log = tmp_path_factory.mktemp("pod") / "termination-log"
    log.write_text("")
    monkeypatch.setenv(EXTRACT_ENV.termination_log, str(log))
    return log


@pytest.fixture
def marserve(termination_log: Path, capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Runs `marserve ARGS...` in-process, or as a real subprocess with `subprocess=True`."""

    def run(*args: str | Path, subprocess_run: bool = False) -> Outcome:
        argv = [str(arg) for arg in args]
        if subprocess_run:
            done = subprocess.run(
                [str(MARSERVE), *argv],
                check=False,
                capture_output=True,
                env=os.environ.copy(),
                text=True,
            )
            code, stderr = done.returncode, done.stderr
        else:
            capsys.readouterr()
            code = cli.main(argv)
            stderr = capsys.readouterr().err
        lines = [line for line in stderr.splitlines() if line.strip()]
        return Outcome(code, lines, termination_log.read_text())

    return run


@pytest.fixture
def clean_failure() -> Callable[..., None]:
    return assert_clean_failure


def assert_clean_failure(outcome: Outcome, dest: Path, *, expect: str) -> None:
    """Exit 2, one stderr line naming the problem, the same line logged, nothing left behind."""
    assert outcome.code == 2
    assert len(outcome.stderr_lines) == 1, outcome.stderr_lines
    line = outcome.stderr_lines[0]
    assert line.startswith("marserve extract: ")
    assert expect in line, line
    assert outcome.termination_log == line + "\n"
    assert not dest.exists() or list(dest.iterdir()) == []
    assert not list(dest.parent.glob(f"{STAGING_PREFIX}*"))


@pytest.fixture
def read_tree() -> Callable[[Path], dict[str, bytes]]:
    return tree


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under `root` by relative path, with its bytes."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


class LocalServer:
    """An aiohttp app on 127.0.0.1 in its own thread, so synchronous code can call it."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = web.AppRunner(app)
        self.url = ""

    def __enter__(self) -> LocalServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def serve() -> Iterator[Callable[[web.Application], LocalServer]]:
    """Starts aiohttp apps on ephemeral 127.0.0.1 ports; stops them after the test."""
    started: list[LocalServer] = []

    def start(app: web.Application) -> LocalServer:
        server = LocalServer(app).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__()


@pytest.fixture
def cloud_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No cloud credentials or endpoints from the machine running the tests."""
    object_stores.clear_cloud_env(monkeypatch, tmp_path)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with object_stores.moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    with object_stores.gcs_emulator() as url:
        yield url


@pytest.fixture(scope="session")
def azurite_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with object_stores.azurite(tmp_path_factory.mktemp("azurite")) as url:
        yield url
