"""`make run`'s example, the way the README shows it: train, archive, serve, and the same answer."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "iris"


def readme_example() -> tuple[bytes, Any]:
    """The request body and answer of the README's `curl` example."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```console\n\$ curl (?P<command>.*?)\n(?P<answer>.*?)```", readme, re.S)
    assert block, "the README has no curl example"
    payload = re.search(r"-d '(?P<body>[^']*)'", block["command"])
    assert payload
    return payload["body"].encode(), json.loads(block["answer"])


@pytest.fixture(scope="module")
def iris_server(own_tmp: Path, server_kit: Any) -> Iterator[Any]:
    bin_dir = Path(sys.executable).parent
    weights = own_tmp / "iris.pth"
    subprocess.run(
        [sys.executable, "-P", str(EXAMPLE / "train.py"), str(weights)], check=True, cwd=own_tmp
    )
    subprocess.run(
        [
            str(bin_dir / "marserve"), "archive", "--model-name", "iris", "--version", "1.0",
            "--model-file", str(EXAMPLE / "model.py"), "--serialized-file", str(weights),
            "--handler", str(EXAMPLE / "handler.py"),
            "--extra-files", str(EXAMPLE / "index_to_name.json"),
            "--config-file", str(EXAMPLE / "model-config.yaml"), "--export-path", str(own_tmp),
        ],
        check=True,
        cwd=own_tmp,
    )  # fmt: skip
    server = server_kit.start_server(
        own_tmp, model_args=["iris=iris.mar"], extra_args=["--model-store", str(own_tmp)]
    )
    yield server
    server_kit.stop_server(server)


def test_the_readme_curl_example_answers_as_shown(iris_server: Any) -> None:
    body, expected = readme_example()
    request = urllib.request.Request(
        f"{iris_server.inference}/predictions/iris",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read()) == expected


def test_make_runs_open_inference_curl_answers(iris_server: Any) -> None:
    """The v2 `curl` line `make run` prints works against the same archive."""
    makefile = (REPO / "Makefile").read_text()
    line = re.search(r"/v2/models/iris/infer -d '(?P<body>[^']*)'", makefile)
    assert line, "make run prints no v2 curl line"
    body = line["body"].replace('\\"', '"')
    request = urllib.request.Request(
        f"{iris_server.inference}/v2/models/iris/infer", data=body.encode()
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert answer["model_name"] == "iris"
    assert [output["name"] for output in answer["outputs"]] == ["output-0"]
