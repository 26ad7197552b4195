"""Resolving `--models` entries: directories, archives from the store, `all`, duplicates."""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path
from typing import Any

import pytest

from marserve.server import config, options
from marserve.server.model_sources import resolve_models


def build(argv: list[str]) -> config.ServerConfig:
    parser = argparse.ArgumentParser()
    options.add_arguments(parser)
    return options.build_config(parser.parse_args(argv), environ={})


def zip_dir(directory: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as out:
        for path in directory.rglob("*"):
            if path.is_file():
                out.write(path, path.relative_to(directory).as_posix())
    return archive


@pytest.fixture
def store(tmp_path: Path, server_kit: Any) -> Path:
    """A model store with one archive (`zipped.mar`) and one extracted directory (`plain`)."""
    store = tmp_path / "store"
    store.mkdir()
    source = server_kit.scripted_model_dir(
        tmp_path / "zipped", name="zipped", yaml_config={"batchSize": 4, "maxBatchDelay": 9}
    )
    zip_dir(source, store / "zipped.mar")
    server_kit.scripted_model_dir(store / "plain", name="plain")
    return store


def test_all_serves_every_archive_and_directory_in_the_store(store: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sources = resolve_models(
        build(["--model-store", str(store), "--models", "all"]), scratch=scratch
    )
    by_name = {source.name: source for source in sources}
    assert set(by_name) == {"plain", "zipped"}
    assert by_name["zipped"].model_dir.is_relative_to(scratch)  # unpacked, not served in place
    zipped = by_name["zipped"].settings
    assert (zipped.batch_size, zipped.max_batch_delay_ms) == (4, 9)
    assert by_name["plain"].model_dir == store / "plain"


def test_names_and_store_relative_paths(store: Path, tmp_path: Path) -> None:
    argv = ["--model-store", str(store), "--models", "first=zipped.mar,second=plain"]
    sources = resolve_models(build(argv), scratch=tmp_path)
    assert [source.name for source in sources] == ["first", "second"]


@pytest.mark.parametrize(
    ("models", "needle"),
    [
        (["a=plain", "a=zipped.mar"], "listed twice"),
        (["missing.mar"], "does not exist"),
        ([], "no models"),
    ],
)
def test_unusable_model_lists_are_config_errors(
    store: Path, tmp_path: Path, models: list[str], needle: str
) -> None:
    argv = ["--model-store", str(store)] + (["--models", *models] if models else [])
    with pytest.raises(config.ConfigError, match=needle):
        resolve_models(build(argv), scratch=tmp_path)
