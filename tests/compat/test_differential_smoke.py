"""A fast part of `make compat` kept in `make test`: the real `torch-model-archiver` makes the
differential tests' archives, and the copy marserve serves names the envelope TorchServe's
config would. Skips where `.venv-torchserve` is absent."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from compat import conftest, side_by_side


def test_archives_and_their_envelope_copies(store: conftest.Store, tmp_path: Path) -> None:
    for name in conftest.MODELS:
        with zipfile.ZipFile(store.mar(name)) as archive:
            manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        assert manifest["model"]["modelName"] == name and "envelope" not in manifest["model"]
    copy = side_by_side.with_envelope(store.mar("mlp"), envelope="kserve", destination=tmp_path)
    manifest = json.loads((copy / "MAR-INF" / "MANIFEST.json").read_text())
    assert manifest["model"]["envelope"] == "kserve"
    assert manifest["model"]["handler"] == "base_handler"
