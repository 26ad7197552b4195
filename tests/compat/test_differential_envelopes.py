"""TorchServe 0.12 and marserve with each request envelope, asked the same requests.

TorchServe takes the envelope from `service_envelope` (config.properties, every model); marserve
from the archive's manifest: a kept difference the README lists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest

from compat import conftest
from compat.side_by_side import Pair

pytestmark = pytest.mark.compat

ROWS = [[0.5, -1.0, 0.25, 2.0, 0.0, 1.5, -0.75, 0.125], [0.1 * i for i in range(8)]]
JSON = {"Content-Type": "application/json"}
V2 = {"inputs": [{"name": "input-0", "shape": [2, 8], "datatype": "FP32", "data": ROWS}]}
CASES = {
    "json": [("/predictions/mlp", {"instances": ROWS}), ("/predictions/echo", {"instances": [1]})],
    "body": [("/predictions/echo", {"any": "thing"}), ("/explanations/echo", [1, 2])],
    "kserve": [
        ("/v1/models/mlp:predict", {"instances": ROWS}),
        ("/v1/models/echo:explain", {"instances": [[1]]}),
        ("/predictions/mlp", {"instances": ROWS}),
    ],
    "kservev2": [("/predictions/echo", V2), ("/v2/models/echo/infer", V2)],
}


@pytest.fixture(scope="module", params=sorted(CASES))
def envelope_pair(
    request: pytest.FixtureRequest,
    store: conftest.Store,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Pair]]:
    envelope: str = request.param
    run_dir = tmp_path_factory.mktemp(envelope)
    for pair in conftest.serve_pair(store, names=("echo", "mlp"), envelope=envelope,
                                    run_dir=run_dir):  # fmt: skip
        yield envelope, pair


def same_data(ours: Any, theirs: Any) -> bool:
    """Equal as JSON data; floats to 1e-6, since a batch of rows may round differently."""
    if isinstance(ours, float) and isinstance(theirs, float):
        return math.isclose(ours, theirs, rel_tol=1e-6, abs_tol=1e-6)
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(map(same_data, ours, theirs))
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(same_data(ours[k], theirs[k]) for k in ours)
    return bool(ours == theirs)


def comparable(envelope: str, data: Any) -> Any:
    """kservev2 answers differ on purpose in two fields: `id` is each server's own request id
    when the body names none, and marserve's `shape` is the output's shape where TorchServe
    flattens every output to `[N]`."""
    if envelope != "kservev2" or not isinstance(data, dict):
        return data
    outputs = [{k: v for k, v in out.items() if k != "shape"} for out in data.get("outputs", [])]
    return {**{k: v for k, v in data.items() if k != "id"}, "outputs": outputs}


def test_each_envelope_answers_alike(envelope_pair: tuple[str, Pair]) -> None:
    envelope, pair = envelope_pair
    differences = []
    for path, body in CASES[envelope]:
        torchserve, marserve = pair.ask("POST", path, body=json.dumps(body).encode(),
                                        headers=JSON)  # fmt: skip
        ours, theirs = (comparable(envelope, answer.data()) for answer in (marserve, torchserve))
        if marserve.status != torchserve.status or not same_data(ours, theirs):
            differences.append((path, torchserve.status, torchserve.body, marserve.status,
                                marserve.body))  # fmt: skip
    assert not differences
