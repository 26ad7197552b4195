"""Built-in handlers: TorchServe's pre- and post-processing, checked against independent code."""

from __future__ import annotations

import base64
import importlib
import inspect
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from marserve.errors import PredictionException
from marserve.handlers.base_handler import BaseHandler
from marserve.handlers.builtin import BUILTIN_HANDLERS, UNSUPPORTED_BUILTIN_HANDLERS
from marserve.handlers.image_classifier import ImageClassifier
from marserve.handlers.image_segmenter import ImageSegmenter
from marserve.handlers.image_transforms import CenterCrop, Resize
from marserve.handlers.object_detector import ObjectDetector
from marserve.model_loader import load_service
from support import handler_fixtures, models
from support.handler_fixtures import image_bytes, imagenet_reference, random_image

LABELS = {"0": ["n0", "ant"], "1": ["n1", "bee"], "2": ["n2", "cat"], "3": ["n3", "dog"]}


def _serve(handler: BaseHandler, model_dir: Path, **context: Any) -> BaseHandler:
    handler.initialize(
        handler_fixtures.make_context(model_dir, serialized_file="model.pt", **context)
    )
    return handler


def _handle(handler: BaseHandler, rows: list[dict[str, Any]]) -> Any:
    assert handler.context is not None
    return handler.handle(rows, handler_fixtures.with_headers(handler.context, [{}] * len(rows)))


@pytest.fixture
def cnn(tmp_path: Path) -> torch.nn.Module:
    model = models.make_cnn(seed=2)
    models.write_torchscript(model, tmp_path)
    models.write_json(tmp_path / "index_to_name.json", LABELS)
    return model


@pytest.mark.parametrize(("width", "height"), [(300, 200), (200, 333), (256, 256), (120, 90)])
def test_classifier_preprocessing_matches_torchvision_semantics(width: int, height: int) -> None:
    image = random_image(width, height, seed=width)
    actual = ImageClassifier.image_processing(image)
    assert actual.shape == (3, 224, 224)
    torch.testing.assert_close(actual, imagenet_reference(image), atol=1e-5, rtol=1e-5)


def test_resize_keeps_the_aspect_ratio() -> None:
    assert Resize(256)(random_image(400, 300)).size == (341, 256)
    assert Resize(256)(random_image(300, 400)).size == (256, 341)


def test_center_crop_pads_small_images_with_black() -> None:
    image = Image.new("L", (2, 4), color=200)
    cropped = CenterCrop(4)(image)
    assert cropped.size == (4, 4)
    assert [cropped.getpixel((x, 0)) for x in range(4)] == [0, 200, 200, 0]


def test_image_classifier_answers_top_labels(tmp_path: Path, cnn: torch.nn.Module) -> None:
    images = [random_image(320, 240, seed=1), random_image(200, 260, seed=2, mode="RGBA")]
    rows: list[dict[str, Any]] = [
        {"data": image_bytes(images[0], "PNG")},
        {"body": base64.b64encode(image_bytes(images[1], "PNG")).decode()},
    ]
    handler = _serve(ImageClassifier(), tmp_path)
    output = _handle(handler, rows)

    with torch.no_grad():
        probs = torch.softmax(cnn(torch.stack([imagenet_reference(i) for i in images])), dim=1)
    top = torch.topk(probs, 4, dim=1)
    assert len(output) == 2
    for answer, values, indices in zip(output, top.values, top.indices, strict=True):
        assert list(answer) == [LABELS[str(int(i))][-1] for i in indices]
        torch.testing.assert_close(torch.tensor(list(answer.values())), values)


def test_classifier_topk_is_adjustable(tmp_path: Path, cnn: torch.nn.Module) -> None:
    handler = _serve(ImageClassifier(), tmp_path)
    handler.set_max_result_classes(2)
    (answer,) = _handle(handler, [{"body": image_bytes(random_image(64, 64), "JPEG")}])
    assert handler.get_max_result_classes() == 2 and len(answer) == 2


def test_vision_rows_may_be_tensors_as_lists(tmp_path: Path, cnn: torch.nn.Module) -> None:
    pixels = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    handler = _serve(ImageClassifier(), tmp_path)
    (answer,) = _handle(handler, [{"data": pixels.tolist()}])
    with torch.no_grad():
        best = int(cnn(pixels[None]).argmax())
    assert next(iter(answer)) == LABELS[str(best)][-1]


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"\x89PNG but not really", "not an image"), ("***not base64***", "not valid base64")],
)
def test_undecodable_images_are_400(
    tmp_path: Path, cnn: torch.nn.Module, body: bytes | str, message: str
) -> None:
    handler = _serve(ImageClassifier(), tmp_path)
    with pytest.raises(PredictionException, match=message) as caught:
        _handle(handler, [{"body": body}])
    assert caught.value.error_code == 400


def test_limit_max_image_pixels_false_lifts_the_pil_limit(
    tmp_path: Path, cnn: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    _serve(ImageClassifier(), tmp_path, limit_max_image_pixels=True)
    assert Image.MAX_IMAGE_PIXELS is not None
    _serve(ImageClassifier(), tmp_path, limit_max_image_pixels=False)
    assert Image.MAX_IMAGE_PIXELS is None


def test_images_over_the_pixel_limit_are_413(
    tmp_path: Path, cnn: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = _serve(ImageClassifier(), tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(PredictionException, match="too large") as caught:
        _handle(handler, [{"body": image_bytes(random_image(64, 64))}])
    assert caught.value.error_code == 413


def test_image_segmenter_answers_class_and_probability_per_pixel(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = handler_fixtures.TinySegmenter().eval()
    models.write_torchscript(model, tmp_path)
    image = random_image(240, 240, seed=5)
    handler = _serve(ImageSegmenter(), tmp_path)
    output = torch.tensor(_handle(handler, [{"body": image_bytes(image)}]))

    with torch.no_grad():
        probs = torch.softmax(model(imagenet_reference(image)[None])["out"], dim=1)
    assert output.shape == (1, 224, 224, 2)
    torch.testing.assert_close(output[..., 0], probs.argmax(dim=1).float())
    torch.testing.assert_close(output[..., 1], probs.max(dim=1).values)


def test_object_detector_keeps_confident_boxes(tmp_path: Path) -> None:
    models.write_torchscript(handler_fixtures.FixedDetector(), tmp_path)
    models.write_json(tmp_path / "index_to_name.json", {"object_type_names": ["bg", "person"]})
    white, black = Image.new("RGB", (8, 8), "white"), Image.new("RGB", (8, 8), "black")
    handler = _serve(ObjectDetector(), tmp_path)
    output = _handle(handler, [{"body": image_bytes(white)}, {"body": image_bytes(black)}])
    assert output == [
        [{"person": [0.0, 0.0, 4.0, 4.0], "score": 1.0}, {"3": [5.0] * 4, "score": 0.5}],
        [{"2": [1.0, 2.0, 3.0, 4.0], "score": 1.0}, {"3": [5.0] * 4, "score": 0.5}],
    ]


@pytest.mark.parametrize("name", sorted(BUILTIN_HANDLERS))
def test_builtin_names_resolve_to_one_handler_class(name: str) -> None:
    module = importlib.import_module(BUILTIN_HANDLERS[name])
    own_classes = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__
    ]
    assert len(own_classes) == 1
    assert issubclass(own_classes[0], BaseHandler)
    assert module.__name__.rsplit(".", 1)[-1] == name, "named as TorchServe's module"


def test_text_classifier_is_declined_with_the_reason() -> None:
    assert "text_classifier" not in BUILTIN_HANDLERS
    assert "torchtext" in UNSUPPORTED_BUILTIN_HANDLERS["text_classifier"]


def _archive_and_load(tmp_path: Path, **archiver: Any) -> Any:
    """A MAR from the real torch-model-archiver, unpacked and loaded as the worker loads it."""
    mar = models.torch_model_archiver(model_name="tiny", export_path=tmp_path / "store", **archiver)
    model_dir = tmp_path / "model"
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(model_dir)
    return load_service(model_dir)


def _png_request(request_id: str, image: Image.Image) -> dict[str, Any]:
    parameter = {"name": "body", "contentType": "image/png", "value": image_bytes(image)}
    return {"requestId": request_id.encode(), "parameters": [parameter]}


def test_image_classifier_by_name_from_a_real_mar(tmp_path: Path) -> None:
    model = models.make_cnn(seed=4)
    weights = models.write_torchscript(model, tmp_path / "src")
    labels = models.write_json(tmp_path / "src" / "index_to_name.json", LABELS)
    service = _archive_and_load(
        tmp_path, handler="image_classifier", serialized_file=weights, extra_files=[labels]
    )
    images = [random_image(300, 200, seed=7), random_image(180, 240, seed=8)]
    results = service.predict([_png_request(f"r{i}", image) for i, image in enumerate(images)])

    with torch.no_grad():
        probs = torch.softmax(model(torch.stack([imagenet_reference(i) for i in images])), dim=1)
    for result, row in zip(results, probs, strict=True):
        assert result.status == 200
        answer = json.loads(result.body)
        expected = {LABELS[str(i)][-1]: p for i, p in enumerate(row.tolist())}
        assert answer.keys() == expected.keys()
        torch.testing.assert_close(
            torch.tensor([answer[k] for k in expected]), torch.tensor(list(expected.values()))
        )


def test_base_handler_by_name_compiles_as_the_archived_yaml_says(tmp_path: Path) -> None:
    model = models.make_mlp(seed=12)
    model_file, weights = models.write_eager(model, tmp_path / "src")
    config = models.write_text(
        tmp_path / "src" / "model-config.yaml", "pt2:\n  compile:\n    backend: eager\n"
    )
    service = _archive_and_load(
        tmp_path,
        handler="base_handler",
        model_file=model_file,
        serialized_file=weights,
        config_file=config,
    )
    rows = torch.randn(2, 8, generator=torch.Generator().manual_seed(3))
    parameter = {"name": "body", "contentType": "application/json"}
    batch = [
        {
            "requestId": b"r0",
            "parameters": [{**parameter, "value": json.dumps(rows[0].tolist()).encode()}],
        },
        {
            "requestId": b"r1",
            "parameters": [{**parameter, "value": json.dumps(rows[1].tolist()).encode()}],
        },
    ]
    results = service.predict(batch)
    assert [r.status for r in results] == [200, 200]
    output = torch.tensor([json.loads(r.body) for r in results])
    torch.testing.assert_close(output, model(rows).detach())
    describe = {**batch[0], "headers": [{"name": b"describe", "value": b"True"}]}
    (description,) = service.predict([describe])
    assert json.loads(description.body)["compiled"] is True


def test_explanations_are_integrated_gradients(tmp_path: Path) -> None:
    """For a linear model the path integral is exact: attribution = input x weight of the target."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 224 * 224, 4)).eval()
    models.write_torchscript(model, tmp_path)
    image = random_image(240, 260, seed=9)
    handler = _serve(ImageClassifier(), tmp_path)
    assert handler.context is not None
    context = handler_fixtures.with_headers(handler.context, [{"explain": "True"}])
    rows = [{"body": image_bytes(image), "target": 2}]
    (attributions,) = handler.handle(rows, context)

    expected = imagenet_reference(image) * model[1].weight[2].detach().view(3, 224, 224)
    torch.testing.assert_close(torch.tensor(attributions), expected, atol=1e-5, rtol=1e-4)


def test_explanation_target_must_be_a_class_index(tmp_path: Path, cnn: torch.nn.Module) -> None:
    handler = _serve(ImageClassifier(), tmp_path)
    assert handler.context is not None
    context = handler_fixtures.with_headers(handler.context, [{"explain": "True"}])
    rows = [{"body": image_bytes(random_image(32, 32)), "target": "cat"}]
    with pytest.raises(PredictionException, match="target must be a class index") as caught:
        handler.handle(rows, context)
    assert caught.value.error_code == 400
