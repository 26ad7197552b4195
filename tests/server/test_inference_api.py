"""The inference port over real HTTP: TorchServe routes, KServe v1, Open Inference Protocol v2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import torch
import yarl

from support import models

ROW = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5, -0.75, 0.125]


def direct(rows: list[list[float]]) -> list[list[float]]:
    """What the tiny MLP answers when run directly in torch."""
    with torch.no_grad():
        result: list[list[float]] = models.make_mlp()(torch.tensor(rows)).tolist()
        return result


@pytest.fixture
async def http(auth: dict[str, str]) -> Any:
    async with aiohttp.ClientSession(headers=auth) as session:
        yield session


async def test_ping_is_unhealthy_while_loading_then_healthy(main_server: Any, http: Any) -> None:
    assert main_server.ping_statuses[0] == 503
    async with (
        aiohttp.ClientSession() as anonymous,  # probes need no token
        anonymous.get(f"{main_server.inference}/ping") as response,
    ):
        assert response.status == 200
        assert await response.json() == {"status": "Healthy"}


async def test_prediction_matches_the_model_run_directly(main_server: Any, http: Any) -> None:
    url = f"{main_server.inference}/predictions/mlp"
    async with http.post(url, json=[ROW]) as response:
        assert response.status == 200
        assert await response.json() == direct([ROW])
    async with http.post(f"{url}/1.0", json=[ROW]) as response:
        assert response.status == 200


async def test_archive_from_torch_model_archiver_answers_like_the_model(
    main_server: Any, http: Any
) -> None:
    async with http.post(f"{main_server.inference}/predictions/archived", json=ROW) as response:
        assert response.status == 200
        assert await response.json() == direct([ROW])[0]


async def test_multipart_fields_become_named_inputs(main_server: Any, http: Any) -> None:
    form = aiohttp.FormData()
    form.add_field("x", json.dumps([ROW]), content_type="application/json", filename="x.json")
    form.add_field("note", "ignored")
    async with http.post(f"{main_server.inference}/predictions/mlp", data=form) as response:
        assert response.status == 200
        assert await response.json() == direct([ROW])


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_uploads_predict_as_a_post_does(main_server: Any, http: Any, method: str) -> None:
    """TorchServe's docs send inputs with `curl -T FILE`, a PUT; it predicts on any method."""
    for path in ("/predictions/mlp", "/predictions/mlp/1.0", "/explanations/mlp"):
        url = f"{main_server.inference}{path}"
        async with http.request(method, url, json=[ROW]) as response:
            assert response.status == 200
            assert await response.json() == direct([ROW])


async def test_explanations_route(main_server: Any, http: Any) -> None:
    async with http.post(f"{main_server.inference}/explanations/mlp", json=[ROW]) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/predictions/nope", 404),
        ("POST", "/predictions/mlp/9.9", 404),
        ("POST", "/v2/models/mlp/versions/9.9/infer", 404),
        ("GET", "/v2/models/nope", 404),
        ("GET", "/v2/no/such/route", 404),
        ("DELETE", "/v2/models/mlp", 405),
        ("GET", "/no/such/route", 404),
        ("OPTIONS", "/predictions/mlp", 405),
        ("PUT", "/predictions/nope", 404),
        ("PUT", "/ping", 405),
    ],
)
async def test_unknown_routes_and_methods_get_json_errors(
    main_server: Any, http: Any, method: str, path: str, status: int
) -> None:
    async with http.request(method, f"{main_server.inference}{path}", json={}) as response:
        assert response.status == status
        body = await response.json()
    if path.startswith("/v2/"):  # the Open Inference Protocol's error body
        assert list(body) == ["error"]
        assert any(
            words in body["error"]
            for words in ("Model not found: nope", "Model version: 9.9 does not exist", "No route",
                          "Method")
        )  # fmt: skip
    else:
        assert body["code"] == status
        assert body["type"] and body["message"]


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/predictions/mlp", b"--xx\r\nbroken", "multipart/form-data; boundary=xx"),
        ("/v2/models/mlp/infer", b"[" * 50_000, "application/json"),
        ("/v2/models/mlp/infer", b"\xff\xfe", "application/json"),
        ("/v1/models/mlp:predict", b"[]", "application/json"),
    ],
)
async def test_malformed_bodies_get_400(
    main_server: Any, http: Any, path: str, body: bytes, content_type: str
) -> None:
    headers = {"Content-Type": content_type}
    async with http.post(f"{main_server.inference}{path}", data=body, headers=headers) as response:
        assert response.status == 400
        error = await response.json()
    assert error["error"] if path.startswith("/v2/") else error["code"] == 400


async def test_body_over_the_limit_gets_413(main_server: Any, http: Any) -> None:
    url = f"{main_server.inference}/predictions/mlp"
    async with http.post(url, data=b"x" * 200_000) as response:
        assert response.status == 413
        assert (await response.json())["code"] == 413


async def test_answer_over_the_response_limit_is_an_error(main_server: Any, http: Any) -> None:
    url = f"{main_server.inference}/predictions/mlp"
    async with http.post(url, json={"big": 60_000}) as response:
        assert response.status == 500
        assert (await response.json())["type"] == "ResponseTooLarge"
    async with http.post(url, json={"big": 100}) as response:
        assert response.status == 200


async def test_wrong_or_missing_token_gets_401_but_probes_are_open(main_server: Any) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer wrong"}) as session:
        for url in (
            f"{main_server.inference}/predictions/mlp",
            f"{main_server.inference}/v2/models/mlp/infer",
        ):
            async with session.post(url, json=[ROW]) as response:
                assert response.status == 401
                error = await response.json()
            assert "Authorization: Bearer" in error.get("error", error.get("message"))
        async with session.get(f"{main_server.management}/models") as response:
            assert response.status == 401
        for path in ("/ping", "/v2/health/live", "/v2/health/ready", "/openapi.json"):
            async with session.get(f"{main_server.inference}{path}") as response:
                assert response.status == 200
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.post(f"{main_server.inference}/predictions/mlp") as response,
    ):
        assert response.status == 401


async def test_request_id_is_echoed_or_generated(main_server: Any, http: Any) -> None:
    url = f"{main_server.inference}/predictions/mlp"
    async with http.post(url, json=[ROW], headers={"X-Request-Id": "abc-123"}) as response:
        assert response.headers["X-Request-Id"] == "abc-123"
    async with http.post(url, json=[ROW]) as response:
        assert len(response.headers["X-Request-Id"]) >= 16


async def test_streamed_answer_arrives_as_chunks(main_server: Any, http: Any) -> None:
    url = f"{main_server.inference}/predictions/mlp"
    async with http.post(url, json={"stream": 3}) as response:
        assert response.status == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        chunks = [chunk async for chunk in response.content.iter_any()]
    assert b"".join(chunks) == b"part0 part1 part2 end"


async def test_workers_are_spread_over_the_configured_devices(main_server: Any, http: Any) -> None:
    async with http.get(f"{main_server.management}/models/mlp") as response:
        (described,) = await response.json()
    assert sorted(w["gpu"] for w in described["workers"]) == [3, 5]
    async with http.post(f"{main_server.inference}/predictions/mlp", json={}) as response:
        assert (await response.json())["gpu"] in (3, 5)


async def test_workers_run_in_the_model_dir_without_the_repo_on_sys_path(
    main_server: Any, http: Any
) -> None:
    async with http.post(f"{main_server.inference}/predictions/mlp", json={"probe": 1}) as response:
        probe = await response.json()
    repo = str(Path(__file__).resolve().parents[2])
    assert Path(probe["cwd"]).name == "mlp"
    assert not probe["operator"].startswith(repo)  # the standard library's, not operator/
    assert repo not in probe["path"] and "" not in probe["path"]


async def test_workers_keep_torch_and_the_model_out_of_full_garbage_collections(
    main_server: Any, http: Any
) -> None:
    """Objects that live as long as the worker are frozen: a full collection walks only what
    requests created, not torch's heap (a 50-130 ms pause for every request in flight)."""
    async with http.post(f"{main_server.inference}/predictions/mlp", json={"probe": 1}) as response:
        probe = await response.json()
    assert probe["gc_frozen"] > 50_000
    assert probe["gc_tracked"] < probe["gc_frozen"] / 10
    assert probe["gc_enabled"]  # off only in the fork server, while torch is imported


async def test_kserve_v1(main_server: Any, http: Any) -> None:
    base = f"{main_server.inference}/v1/models"
    async with http.post(f"{base}/mlp:predict", json={"instances": [[ROW], [ROW]]}) as response:
        assert response.status == 200
        assert await response.json() == {"predictions": [direct([ROW])] * 2}
    async with http.post(f"{base}/mlp:predict", json={"rows": []}) as response:
        assert response.status == 400
    async with http.get(base) as response:
        assert "mlp" in (await response.json())["models"]
    async with http.get(f"{base}/mlp") as response:
        assert await response.json() == {"name": "mlp", "ready": True}


def v2_input(**overrides: Any) -> dict[str, Any]:
    tensor = {"name": "x", "shape": [1, 8], "datatype": "FP32", "data": ROW}
    return {"id": "req-1", "inputs": [{**tensor, **overrides}]}


async def test_v2_infer_and_metadata(main_server: Any, http: Any) -> None:
    base = f"{main_server.inference}/v2"
    async with http.post(f"{base}/models/mlp/versions/1.0/infer", json=v2_input()) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["model_name"] == "mlp" and answer["id"] == "req-1"
    (output,) = answer["outputs"]
    assert output["shape"] == [1, 4]
    assert output["data"] == direct([ROW])[0]
    async with http.get(f"{base}/models/mlp") as response:
        assert (await response.json())["versions"] == ["1.0"]
    for path in ("/models/mlp/ready", "/models/mlp/versions/1.0/ready", "/health/ready"):
        async with http.get(f"{base}{path}") as response:
            assert response.status == 200
    async with http.get(f"{base}/health/live") as response:
        assert await response.json() == {"live": True}


@pytest.mark.parametrize(
    "tensor",
    [
        {"shape": [2, 8]},
        {"datatype": "INT32"},
        {"datatype": "FLOAT99"},
        {"data": ROW[:7]},
        {"shape": [1, -8]},
        {"data": "not a list"},
    ],
)
async def test_v2_rejects_inconsistent_tensors(
    main_server: Any, http: Any, tensor: dict[str, Any]
) -> None:
    url = f"{main_server.inference}/v2/models/mlp/infer"
    async with http.post(url, json=v2_input(**tensor)) as response:
        assert response.status == 400
        assert (await response.json())["error"].startswith("input 'x': ")


async def test_openapi_describes_the_inference_routes(main_server: Any, http: Any) -> None:
    async with http.get(f"{main_server.inference}/openapi.json") as response:
        document = await response.json()
    assert document["openapi"].startswith("3.")
    for path in ("/ping", "/predictions/{model}", "/v2/models/{model}/infer"):
        assert path in document["paths"]


@pytest.mark.parametrize(
    ("hot", "routed"),
    [
        ("/predictions/mlp", "/predictions/ml%70"),  # the escape sends it through the router
        ("/predictions/nope", "/predictions/nop%65"),
        ("/v2/models/nope/infer", "/v2/models/nop%65/infer"),
    ],
)
async def test_the_hot_path_and_the_router_answer_alike(
    main_server: Any, auth: dict[str, str], hot: str, routed: str
) -> None:
    """`inference_dispatch` answers plain hot paths itself and leaves escaped ones to aiohttp's
    router: status, body, content type, request id and the token check must not tell them
    apart."""
    answers = []
    async with aiohttp.ClientSession() as session:
        for path in (hot, routed):
            url = yarl.URL(f"{main_server.inference}{path}", encoded=True)
            headers = {**auth, "X-Request-Id": f"same-{path}"}
            async with session.post(url, json=[ROW], headers=headers) as response:
                assert response.headers["X-Request-Id"] == f"same-{path}"
                answers.append((response.status, response.content_type, await response.read()))
            async with session.post(url, json=[ROW]) as response:
                assert response.status == 401
    assert answers[0] == answers[1]
    assert answers[0][0] in (200, 404)
