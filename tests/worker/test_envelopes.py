"""Envelopes unwrap every request of a batch and answer each one (TorchServe's read only one)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from marserve import envelopes
from marserve.context import Context
from marserve.service import Service

MANIFEST = {"model": {"modelName": "tiny", "modelVersion": "2.0", "handler": "h.py"}}


def doubler(data: Any, context: Context) -> Any:
    """Doubles each row; bytes rows report their length; records what it was given."""
    doubler.seen.append(data)  # type: ignore[attr-defined]
    if data is None:
        return None
    return [len(row) if isinstance(row, bytes) else _double(row) for row in data]


def _double(row: Any) -> Any:
    if isinstance(row, dict):
        return {key: _double(value) for key, value in row.items()}
    if isinstance(row, list):
        return [_double(value) for value in row]
    return row * 2


@pytest.fixture(autouse=True)
def reset_seen() -> None:
    doubler.seen = []  # type: ignore[attr-defined]


def serve(name: str, batch: list[Any], handler: Any = doubler) -> list[Any]:
    service = Service("tiny", "/m", MANIFEST, envelopes.wrap(name, handler), None, 8)
    return service.predict(batch)


def bodies(results: list[Any]) -> list[Any]:
    assert [r.status for r in results] == [200] * len(results), results
    return [json.loads(r.body) for r in results]


def test_body_envelope_passes_payloads(make_batch: Any) -> None:
    assert bodies(serve("body", make_batch([1, [2, 3]]))) == [2, [4, 6]]
    assert doubler.seen == [[1, [2, 3]]]  # type: ignore[attr-defined]


def test_json_envelope_flattens_instances_of_every_request(make_batch: Any) -> None:
    batch = make_batch([{"instances": [1, 2]}, {"instances": [3]}, {"instances": []}])
    answers = bodies(serve("json", batch))
    assert answers == [{"predictions": [2, 4]}, {"predictions": [6]}, {"predictions": []}]
    assert doubler.seen == [[1, 2, 3]]  # type: ignore[attr-defined]


def test_json_envelope_decodes_b64_values(make_batch: Any) -> None:
    encoded = base64.b64encode(b"abcd").decode()
    batch = make_batch([{"instances": [{"b64": encoded}, {"image": {"b64": encoded}, "k": 1}]}])
    bodies(serve("json", batch, lambda data, context: doubler.seen.append(data) or [0, 0]))  # type: ignore[attr-defined]
    assert doubler.seen == [[b"abcd", {"image": b"abcd", "k": 1}]]  # type: ignore[attr-defined]


def test_kserve_v1_answers_every_request(make_request: Any) -> None:
    batch = [
        make_request({"instances": [[1, 2]]}, request_id="a"),
        make_request({"instances": [[3], [4]]}, request_id="b", headers={"explain": "True"}),
        make_request(
            b'{"instances": [5]}', request_id="c", content_type="application/octet-stream"
        ),
    ]
    assert bodies(serve("kserve", batch)) == [
        {"predictions": [[2, 4]]},
        {"explanations": [[6], [8]]},
        {"predictions": [10]},
    ]


def test_kserve_v2_reshapes_inputs_and_describes_outputs(make_request: Any) -> None:
    first = {
        "id": "req-1",
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.5, 2, 3, 4]}],
    }
    second = {
        "inputs": [
            {"name": "a", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]},
            {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["hi"]},
        ]
    }
    batch = [make_request(first, request_id="h1"), make_request(second, request_id="h2")]
    seen: list[Any] = []

    def per_input(data: Any, context: Context) -> Any:
        seen.extend(data)
        return [_double(row["data"]) for row in data]

    one, two = bodies(serve("kservev2", batch, per_input))
    assert [row["data"] for row in seen] == [[[1.5, 2], [3, 4]], [1, 2, 3], "hi"]
    assert one == {
        "id": "req-1",
        "model_name": "tiny",
        "model_version": "2.0",
        "outputs": [{"name": "x", "datatype": "FP64", "shape": [2, 2], "data": [3.0, 4, 6, 8]}],
    }
    assert two["id"] == "h2", "without a body id the request id answers"
    assert [o["name"] for o in two["outputs"]] == ["a", "s"]
    assert two["outputs"][0] == {"name": "a", "datatype": "INT64", "shape": [3], "data": [2, 4, 6]}
    assert two["outputs"][1]["datatype"] == "BYTES"


def test_kserve_v2_output_datatype_follows_the_handler(make_request: Any) -> None:
    def typed(data: Any, context: Context) -> Any:
        import numpy as np

        return [np.zeros((1, 2), dtype=np.float32), np.array([True])]

    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0]}] * 2}
    (answer,) = bodies(serve("kservev2", [make_request(body)], typed))
    assert [o["datatype"] for o in answer["outputs"]] == ["FP32", "BOOL"]
    assert answer["outputs"][0]["shape"] == [1, 2]


@pytest.mark.parametrize(
    ("name", "bad_body"),
    [("json", {"no": "instances"}), ("kserve", [1, 2]), ("kservev2", {"inputs": [{"x": 1}]})],
)
def test_malformed_request_fails_alone_with_400(make_batch: Any, name: str, bad_body: Any) -> None:
    good = {"instances": [1]} if name != "kservev2" else {"inputs": [{"name": "x", "data": [1]}]}
    results = serve(name, make_batch([good, bad_body, good]))
    assert [r.status for r in results] == [200, 400, 200]
    assert f"{name} envelope: invalid request" in json.loads(results[1].body)["message"]


def test_mismatched_handler_output_is_left_for_the_service_to_flag(make_batch: Any) -> None:
    results = serve("json", make_batch([{"instances": [1, 2]}]), lambda d, c: [1])
    assert [r.status for r in results] == [503]
    assert json.loads(results[0].body)["message"] == "number of batch response mismatched"


def test_initialisation_call_passes_through(make_batch: Any) -> None:
    envelopes.wrap("kserve.py", doubler)(None, Context("tiny", "/m", {}, 1, None))
    assert doubler.seen == [None]  # type: ignore[attr-defined]


def test_unknown_envelope_names_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match="unknown envelope 'grpc': expected one of body, json, kserve, kservev2"
    ):
        envelopes.wrap("grpc", doubler)


def test_envelope_from_the_manifest(make_model_dir: Any, make_batch: Any) -> None:
    from marserve.model_loader import load_service

    model_dir = make_model_dir(
        "def handle(data, context):\n    return data and [row * 10 for row in data]\n",
        envelope="json",
    )
    results = load_service(model_dir).predict(make_batch([{"instances": [1, 2]}]))
    assert json.loads(results[0].body) == {"predictions": [10, 20]}


def test_json_envelope_answers_json_text_as_torchserve(make_batch: Any) -> None:
    envelope = envelopes.JSONEnvelope(doubler)
    context = Context("tiny", "/m", MANIFEST, 8, None)
    assert envelope.handle([{"body": {"instances": [1]}}], context) == ['{"predictions": [2]}']
    (result,) = serve("json", make_batch([{"instances": [1, 2]}]))
    assert result.body == b'{"predictions": [2, 4]}'
    assert result.content_type == "application/json", "marserve's context labels the text"


def test_json_envelope_keeps_a_content_type_the_handler_set(make_batch: Any) -> None:
    def labelled(data: Any, context: Context) -> Any:
        context.set_response_content_type(0, "application/vnd.tiny+json")
        return [0 for _ in data]

    (result,) = serve("json", make_batch([{"instances": [1]}]), labelled)
    assert result.content_type == "application/vnd.tiny+json"


def test_json_envelope_reads_a_row_without_data_or_body_as_the_document() -> None:
    envelope = envelopes.JSONEnvelope(doubler)
    rows = [{"instances": [1, 2]}, {"data": {"instances": [3]}}]
    assert envelope.handle(rows, Context("tiny", "/m", MANIFEST, 8, None)) == [
        '{"predictions": [2, 4]}',
        '{"predictions": [6]}',
    ]


def test_envelope_written_for_torchserve_overrides_parse_and_format() -> None:
    from marserve.envelopes.base import BaseEnvelope

    class Upper(BaseEnvelope):
        def parse_input(self, data: Any) -> list[Any]:
            return [row["body"].upper() for row in data]

        def format_output(self, data: Any) -> Any:
            return [f"<{item}>" for item in data]

    envelope = Upper(lambda data, context: [f"{row}!" for row in data])
    assert envelope.handle([{"body": "a"}, {"body": "b"}], None) == ["<A!>", "<B!>"]  # type: ignore[arg-type]
