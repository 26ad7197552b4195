"""`marserve archive` writes what torch-model-archiver 0.12.0 writes, and writes it safely."""

from __future__ import annotations

import json
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marserve.archive import extract_archive
from marserve.manifest import MANIFEST_PATH

FORMATS = ("default", "zip-store", "tgz", "no-archive")


def _manifest_without_date(model_dir: Path) -> dict[str, object]:
    manifest = json.loads((model_dir / MANIFEST_PATH).read_text())
    assert isinstance(manifest.pop("createdOn"), str)
    return dict(manifest)


@pytest.mark.parametrize("archive_format", FORMATS)
def test_same_manifest_and_files_as_the_real_archiver(
    archive_format: str,
    real_mars: dict[str, Path],
    archive_flags: list[str],
    marserve: Callable[..., Any],
    read_tree: Callable[[Path], dict[str, bytes]],
    tmp_path: Path,
) -> None:
    outcome = marserve(
        "archive",
        *archive_flags,
        "--export-path",
        tmp_path / "ours",
        "--archive-format",
        archive_format,
    )
    assert outcome.code == 0
    ours = next((tmp_path / "ours").iterdir())
    real = real_mars[archive_format]
    assert ours.name == real.name
    ours_dir = extract_archive(ours, tmp_path / "ours-x")
    real_dir = extract_archive(real, tmp_path / "real-x")
    assert _manifest_without_date(ours_dir) == _manifest_without_date(real_dir)
    ours_files, real_files = read_tree(ours_dir), read_tree(real_dir)
    assert ours_files.keys() == real_files.keys()
    del ours_files[MANIFEST_PATH], real_files[MANIFEST_PATH]
    assert ours_files == real_files
    expected = {"vocab.txt", "nested/deep.txt", ".dotfile", "index_to_name.json", "a.md", "b.md"}
    assert expected <= set(ours_files)
    assert not any("skipped" in name for name in ours_files)


def test_manifest_fields_match_torchserve(real_mars: dict[str, Path], tmp_path: Path) -> None:
    model_dir = extract_archive(real_mars["default"], tmp_path / "real")
    manifest = json.loads((model_dir / MANIFEST_PATH).read_text())
    assert list(manifest) == ["createdOn", "runtime", "model", "archiverVersion"]
    assert manifest["model"] == {
        "modelName": "mlp",
        "serializedFile": "model.pth",
        "handler": "mlp_handler.py",
        "modelFile": "model.py",
        "modelVersion": "1.0",
        "requirementsFile": "requirements.txt",
        "configFile": "model-config.yaml",
    }


@pytest.mark.parametrize(
    ("archive_format", "compression"),
    [("default", zipfile.ZIP_DEFLATED), ("zip-store", zipfile.ZIP_STORED)],
)
def test_zip_formats_compress_like_the_real_archiver(
    archive_format: str,
    compression: int,
    archive_flags: list[str],
    marserve: Callable[..., Any],
    tmp_path: Path,
) -> None:
    marserve(
        "archive", *archive_flags, "--export-path", tmp_path, "--archive-format", archive_format
    )
    with zipfile.ZipFile(tmp_path / "mlp.mar") as archive:
        assert {info.compress_type for info in archive.infolist()} == {compression}
        assert archive.namelist()[-1] == MANIFEST_PATH


def test_tgz_holds_one_top_folder_named_after_the_model(
    archive_flags: list[str], marserve: Callable[..., Any], tmp_path: Path
) -> None:
    marserve("archive", *archive_flags, "--export-path", tmp_path, "--archive-format", "tgz")
    with tarfile.open(tmp_path / "mlp.tar.gz") as archive:
        names = archive.getnames()
    assert f"mlp/{MANIFEST_PATH}" in names
    assert all(name.startswith("mlp/") for name in names)


def test_handler_function_and_builtin_handlers(
    model_inputs: Any, marserve: Callable[..., Any], tmp_path: Path
) -> None:
    handler = model_inputs.handler
    marserve(
        "archive",
        "--model-name",
        "fn",
        "-v",
        "2",
        "--handler",
        f"{handler}:handle",
        "--export-path",
        tmp_path,
    )
    marserve(
        "archive",
        "--model-name",
        "builtin",
        "-v",
        "3",
        "--handler",
        "image_classifier",
        "--envelope",
        "kservev2",
        "--export-path",
        tmp_path,
    )
    with zipfile.ZipFile(tmp_path / "fn.mar") as archive:
        assert sorted(archive.namelist()) == [MANIFEST_PATH, handler.name]
        assert json.loads(archive.read(MANIFEST_PATH))["model"]["handler"] == (
            f"{handler.name}:handle"
        )
    with zipfile.ZipFile(tmp_path / "builtin.mar") as archive:
        assert archive.namelist() == [MANIFEST_PATH]
        model = json.loads(archive.read(MANIFEST_PATH))["model"]
    assert model == {
        "modelName": "builtin",
        "handler": "image_classifier",
        "modelVersion": "3",
        "envelope": "kservev2",
    }


def test_refuses_to_overwrite_without_force(
    archive_flags: list[str], marserve: Callable[..., Any], tmp_path: Path
) -> None:
    first = marserve("archive", *archive_flags, "--export-path", tmp_path)
    before = (tmp_path / "mlp.mar").read_bytes()
    second = marserve("archive", *archive_flags, "--export-path", tmp_path)
    assert (first.code, second.code) == (0, 2)
    assert second.stderr_lines == [
        f"marserve archive: {tmp_path / 'mlp.mar'} already exists (use --force to overwrite it)"
    ]
    assert (tmp_path / "mlp.mar").read_bytes() == before
    forced = marserve("archive", *archive_flags, "--export-path", tmp_path, "--force")
    assert forced.code == 0


@pytest.mark.parametrize("archive_format", ["default", "no-archive"])
def test_a_failed_write_leaves_the_old_archive_and_no_temporary_files(
    archive_format: str,
    archive_flags: list[str],
    marserve: Callable[..., Any],
    tmp_path: Path,
) -> None:
    export = tmp_path / "export"
    marserve("archive", *archive_flags, "--export-path", export, "--archive-format", archive_format)
    (target,) = export.iterdir()
    before = sorted(p.name for p in target.rglob("*")) if target.is_dir() else target.read_bytes()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "aaa.txt").write_text("written before the failure")
    (broken / "zzz.txt").symlink_to(tmp_path / "missing")
    failed = marserve(
        "archive",
        *archive_flags,
        "--extra-files",
        broken,
        "--export-path",
        export,
        "--archive-format",
        archive_format,
        "--force",
    )
    assert failed.code == 2
    assert len(failed.stderr_lines) == 1
    assert list(export.iterdir()) == [target]
    after = sorted(p.name for p in target.rglob("*")) if target.is_dir() else target.read_bytes()
    assert after == before


@pytest.mark.parametrize(
    ("flags", "expect"),
    [
        (("--model-name", "../evil", "--handler", "base_handler"), "must match"),
        (("--model-name", "m", "--handler", "no_such_handler.py"), "does not exist"),
        (
            ("--model-name", "m", "--handler", "base_handler", "--extra-files", "nowhere.txt"),
            "extra file nowhere.txt does not exist",
        ),
    ],
)
def test_bad_input_is_refused_in_one_line(
    flags: tuple[str, ...], expect: str, marserve: Callable[..., Any], tmp_path: Path
) -> None:
    outcome = marserve("archive", *flags, "-v", "1", "--export-path", tmp_path / "out")
    assert outcome.code == 2
    assert len(outcome.stderr_lines) == 1
    assert expect in outcome.stderr_lines[0]
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
