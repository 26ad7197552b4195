"""TorchServe 0.12 and marserve asked the same requests, without an envelope.

Every case either answers the same (status, body as data, media type) or is listed here as a
difference marserve keeps on purpose, with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from compat import conftest, side_by_side
from compat.side_by_side import Answer, Pair

pytestmark = pytest.mark.compat

ROW = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5, -0.75, 0.125]
JSON = {"Content-Type": "application/json"}
BOUNDARY = "marserve-compat"
FORM = (
    (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="data"; filename="x.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    + b"\x00\x01\xfe\xff"
    + (
        f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="label"\r\n\r\ncat\r\n'
        f"--{BOUNDARY}--\r\n"
    ).encode()
)


@pytest.fixture(scope="module")
def pair(store: conftest.Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    run_dir = tmp_path_factory.mktemp("plain")
    yield from conftest.serve_pair(store, names=conftest.MODELS, envelope=None, run_dir=run_dir)


def media_type(answer: Answer) -> str:
    return answer.content_type.split(";")[0].strip()


def assert_same(torchserve: Answer, marserve: Answer, *, handler_answer: bool = False) -> None:
    """Same status, same body as data, the headers clients read: the media type and a request
    id (each server makes its own). A handler's own answer is the one kept difference:
    TorchServe sends it without Content-Type, marserve labels what it is."""
    assert (marserve.status, marserve.data()) == (torchserve.status, torchserve.data())
    assert "x-request-id" in torchserve.headers and "x-request-id" in marserve.headers
    if handler_answer:
        assert (media_type(torchserve), media_type(marserve)) == ("", "application/json")
    else:
        assert media_type(marserve) == media_type(torchserve)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("path", ["/predictions/echo", "/predictions/echo/1.0"])
def test_uploads_reach_the_handler_alike(pair: Pair, method: str, path: str) -> None:
    torchserve, marserve = pair.ask(method, path, body=json.dumps(ROW).encode(), headers=JSON)
    assert torchserve.status == 200
    assert_same(torchserve, marserve, handler_answer=True)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_bodiless_methods_predict_on_an_empty_body(pair: Pair, method: str) -> None:
    torchserve, marserve = pair.ask(method, "/predictions/echo")
    assert torchserve.data()["inputs"] == {"body": {"text": ""}}
    assert_same(torchserve, marserve, handler_answer=True)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\x00\x01\xfe\xff", "application/octet-stream"),
        (b"plain words", "text/plain"),
        (b"a=1&b=two", "application/x-www-form-urlencoded"),
        (FORM, f"multipart/form-data; boundary={BOUNDARY}"),
    ],
    ids=["bytes", "text", "urlencoded-form", "multipart-form"],
)
def test_bodies_and_forms_reach_the_handler_alike(
    pair: Pair, body: bytes, content_type: str
) -> None:
    headers = {"Content-Type": content_type}
    torchserve, marserve = pair.ask("POST", "/predictions/echo", body=body, headers=headers)
    assert torchserve.status == 200
    assert_same(torchserve, marserve, handler_answer=True)


def test_query_parameters_do_not_reach_the_handler(pair: Pair) -> None:
    torchserve, marserve = pair.ask(
        "POST", "/predictions/echo?temperature=0.5&top=3", body=b"x", headers=JSON
    )
    assert list(torchserve.data()["inputs"]) == ["body"]
    assert_same(torchserve, marserve, handler_answer=True)


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_explanations_tell_the_handler_so(pair: Pair, method: str) -> None:
    torchserve, marserve = pair.ask(method, "/explanations/echo", body=b"[1]", headers=JSON)
    assert torchserve.data()["explain"] == "True"
    assert_same(torchserve, marserve, handler_answer=True)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/predictions/nope"),
        ("PUT", "/predictions/nope"),
        ("POST", "/predictions/nope/1.0"),
        ("POST", "/predictions/echo/9.9"),
        ("POST", "/explanations/nope"),
    ],
)
def test_unknown_models_and_versions_get_the_same_404(pair: Pair, method: str, path: str) -> None:
    torchserve, marserve = pair.ask(method, path, body=b"[1]", headers=JSON)
    assert torchserve.status == 404
    assert_same(torchserve, marserve)


def test_a_failing_handler_gets_the_same_503(pair: Pair) -> None:
    torchserve, marserve = pair.ask("POST", "/predictions/raiser", body=b"[1]", headers=JSON)
    assert torchserve.data() == {
        "code": 503, "type": "InternalServerException", "message": "Prediction failed"
    }  # fmt: skip
    assert_same(torchserve, marserve)


def test_a_refusing_handler_gets_its_own_status_and_message(pair: Pair) -> None:
    body = json.dumps({"code": 422}).encode()
    torchserve, marserve = pair.ask("POST", "/predictions/raiser", body=body, headers=JSON)
    assert torchserve.status == 422
    assert_same(torchserve, marserve)


def test_curl_upload_file(pair: Pair) -> None:
    """`curl -T FILE URL`: a PUT of raw bytes without Content-Type, asking 100-continue."""
    headers = {"Expect": "100-continue"}
    body = bytes(range(256)) * 64
    torchserve, marserve = pair.ask("PUT", "/predictions/echo", body=body, headers=headers)
    assert torchserve.status == 200
    assert_same(torchserve, marserve, handler_answer=True)


def test_ping_when_every_model_is_ready(pair: Pair) -> None:
    torchserve, marserve = pair.ask("GET", "/ping")
    assert torchserve.data() == {"status": "Healthy"}
    assert_same(torchserve, marserve)


def test_concurrent_requests_to_a_batching_model_each_get_their_own_answer(pair: Pair) -> None:
    """batchSize 4: how requests are grouped may differ (marserve sends a lone request at once),
    but every request must get the answer to its own input."""
    bodies = [json.dumps({"request": index}).encode() for index in range(8)]

    def ask_all(base: str) -> list[Answer]:
        with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            return list(
                pool.map(
                    lambda body: side_by_side.request(
                        base, "POST", "/predictions/batched", body=body, headers=JSON
                    ),
                    bodies,
                )
            )

    torchserve, marserve = ask_all(pair.torchserve), ask_all(pair.marserve)
    for index, (theirs, ours) in enumerate(zip(torchserve, marserve, strict=True)):
        assert theirs.data()["inputs"]["body"] == {"dict": {"request": index}}
        assert_same(theirs, ours, handler_answer=True)


def test_kept_difference_base_handler_without_envelope(pair: Pair) -> None:
    """TorchServe's base_handler calls torch.as_tensor on the request rows and fails (503);
    marserve's reads the JSON body, so a JSON array predicts without a custom handler."""
    torchserve, marserve = pair.ask("POST", "/predictions/mlp", body=json.dumps(ROW).encode(),
                                    headers=JSON)  # fmt: skip
    assert torchserve.status == 503
    assert marserve.status == 200 and len(marserve.data()) == 4


def test_kept_difference_kserve_v1_without_envelope(pair: Pair) -> None:
    """TorchServe hands the handler the whole `{"instances": [...]}` body and answers its output
    as is; marserve makes each instance one request (batched like separate calls) and answers
    `{"predictions": [...]}` as KServe v1 defines. The `kserve` envelope gives TorchServe's way
    on both (test_differential_envelopes)."""
    body = json.dumps({"instances": [[1, 2], [3]]}).encode()
    torchserve, marserve = pair.ask("POST", "/v1/models/echo:predict", body=body, headers=JSON)
    assert torchserve.data()["inputs"] == {"body": {"dict": {"instances": [[1, 2], [3]]}}}
    assert [p["inputs"] for p in marserve.data()["predictions"]] == [
        {"body": {"list": [1, 2]}},
        {"body": {"list": [3]}},
    ]


def test_kept_difference_options_describes_the_model(pair: Pair) -> None:
    """TorchServe answers OPTIONS on a prediction route with a per-model OpenAPI document;
    marserve describes every route once, at GET /openapi.json."""
    torchserve, marserve = pair.ask("OPTIONS", "/predictions/echo")
    assert torchserve.status == 200 and "openapi" in torchserve.data()
    assert marserve.status == 405


V2_BODY = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}


def test_v2_infer_without_envelope(pair: Pair) -> None:
    """Without an envelope both hand the handler the whole v2 JSON body as one `body` input and
    answer the handler's output as is."""
    torchserve, marserve = pair.ask(
        "POST", "/v2/models/echo/infer", body=json.dumps(V2_BODY).encode(), headers=JSON
    )
    assert torchserve.data()["inputs"] == {"body": {"dict": V2_BODY}}
    assert_same(torchserve, marserve, handler_answer=True)
