"""A MAR from `marserve archive`, unpacked by `marserve extract`, serves what the model computes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from marserve.model_loader import load_service
from support import models


@pytest.mark.parametrize("archive_format", ["default", "tgz"])
def test_our_archive_serves_what_the_model_computes(
    archive_format: str,
    archive_flags: list[str],
    marserve: Callable[..., Any],
    tmp_path: Path,
) -> None:
    made = marserve(
        "archive", *archive_flags, "--export-path", tmp_path, "--archive-format", archive_format
    )
    assert made.code == 0
    (archive,) = (path for path in tmp_path.iterdir() if path.name.startswith("mlp"))
    dest = tmp_path / "models"
    extracted = marserve("extract", archive, dest, subprocess_run=archive_format == "default")
    assert extracted.code == 0, extracted.stderr_lines
    rows = torch.randn(3, 8, generator=torch.Generator().manual_seed(7))
    batch = [
        {
            "requestId": f"r{i}".encode(),
            "parameters": [
                {
                    "name": "body",
                    "contentType": "application/json",
                    "value": json.dumps(row.tolist()).encode(),
                }
            ],
        }
        for i, row in enumerate(rows)
    ]
    results = load_service(dest, batch_size=3).predict(batch)
    assert [result.status for result in results] == [200, 200, 200]
    served = torch.tensor([json.loads(result.body) for result in results])
    with torch.no_grad():
        expected = models.make_mlp()(rows)
    torch.testing.assert_close(served, expected)
