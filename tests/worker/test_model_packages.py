"""Installing and finding a model's own packages, without a server: the cache, pip's failures
and timeouts, the index credentials and the import path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from marserve import model_packages
from marserve.contract import MODEL_PACKAGES_DIR
from marserve.model_packages import DependencyInstallError, PackageIndex
from support.wheels import write_wheel


@pytest.fixture
def offline_wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    wheels = tmp_path / "wheels"
    write_wheel(wheels, name="tinydep", version="1.0", files={"tinydep/__init__.py": "X = 1\n"})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    return wheels


def _model(tmp_path: Path, requirements: str, name: str = "model") -> Path:
    model_dir = tmp_path / name
    model_dir.mkdir()
    (model_dir / "requirements.txt").write_text(requirements)
    return model_dir


def test_an_install_is_cached_by_the_file_digest_and_linked_from_each_model(
    tmp_path: Path, offline_wheels: Path
) -> None:
    first, second = _model(tmp_path, "tinydep==1.0\n"), _model(tmp_path, "tinydep==1.0\n", "b")
    cache = tmp_path / "cache"
    entry = model_packages.install_requirements(
        first, requirements=first / "requirements.txt", cache=cache
    )
    assert (entry / "tinydep" / "__init__.py").is_file()
    assert model_packages.installed_packages(first) == first / MODEL_PACKAGES_DIR
    for wheel in offline_wheels.iterdir():
        wheel.unlink()  # from now on pip would fail: only the cache can serve
    again = model_packages.install_requirements(
        second, requirements=second / "requirements.txt", cache=cache
    )
    assert again == entry
    assert (second / MODEL_PACKAGES_DIR).resolve() == entry.resolve()
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no partial leftovers


def test_a_failed_install_says_what_pip_said_and_caches_nothing(
    tmp_path: Path, offline_wheels: Path
) -> None:
    model_dir = _model(tmp_path, "tinydep==1.0\nmissing-thing>=2\n")
    cache = tmp_path / "cache"
    with pytest.raises(DependencyInstallError, match="No matching distribution found for "):
        model_packages.install_requirements(
            model_dir, requirements=model_dir / "requirements.txt", cache=cache
        )
    assert not any(path.is_dir() and path.name[0] != "." for path in cache.rglob("*/*/*"))
    assert not list(cache.rglob(".*"))
    assert model_packages.installed_packages(model_dir) is None


def test_pip_is_stopped_at_the_timeout(tmp_path: Path, offline_wheels: Path) -> None:
    model_dir = _model(tmp_path, "tinydep==1.0\n")
    with pytest.raises(DependencyInstallError, match=r"pip did not finish within 0\.01 s"):
        model_packages.install_requirements(
            model_dir,
            requirements=model_dir / "requirements.txt",
            cache=tmp_path / "c",
            timeout_s=0.01,
        )


def test_credentials_go_only_into_the_indexes_named() -> None:
    index = PackageIndex(
        index_url="https://pypi.corp/simple",
        extra_index_url="https://a.corp/simple https://me:own@b.corp/simple",
        username="ci bot",
        password="p@ss:word",
    )
    assert index.pip_environ() == {
        "PIP_INDEX_URL": "https://ci%20bot:p%40ss%3Aword@pypi.corp/simple",
        "PIP_EXTRA_INDEX_URL": (
            "https://ci%20bot:p%40ss%3Aword@a.corp/simple https://me:own@b.corp/simple"
        ),
    }
    assert PackageIndex(username="ci", password="secret").pip_environ() == {}


def test_pip_summary_keeps_the_error_lines_short() -> None:
    output = "Collecting x\nLooking in links: /w\nERROR: one\n\nERROR: two\n"
    assert model_packages.pip_summary(output) == "ERROR: one ERROR: two"
    assert model_packages.pip_summary("a\nb\nc\nd\ne\nf\ng\n") == "c d e f g"
    assert len(model_packages.pip_summary("ERROR: " + "x" * 5000)) == 1503


def test_the_packages_go_before_site_packages_and_the_model_dir_before_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marserve.model_loader import add_to_import_path

    model_dir = tmp_path / "model"
    (model_dir / MODEL_PACKAGES_DIR).mkdir(parents=True)
    site = "/usr/lib/python3/site-packages"
    monkeypatch.setattr(sys, "path", ["/stdlib", site])
    assert model_packages.add_to_sys_path(model_dir) == model_dir / MODEL_PACKAGES_DIR
    add_to_import_path(model_dir)
    assert sys.path == [
        "/stdlib",
        str(model_dir.resolve()),
        str(model_dir / MODEL_PACKAGES_DIR),
        site,
    ]
    assert model_packages.add_to_sys_path(tmp_path / "no-packages") is None
