"""Archives that need torchvision, built by the real torch-model-archiver and served by
`marserve serve`: a `model.py` that builds torchvision's ResNet-18 with a handler whose
preprocessing is `torchvision.transforms`, and a digit classifier with torchvision preprocessing.
Each answer must be what the model gives when run directly on the same picture.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from support import models, serving, vision

pytestmark = vision.MARKS

LABELS = {str(index): f"class {index}" for index in range(1000)}


@dataclass
class VisionServer:
    """One server with both archives, and their models to run directly."""

    server: serving.RunningServer
    resnet: torch.nn.Module
    digits: torch.nn.Module
    images: Path


@pytest.fixture(scope="module")
def vision_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VisionServer]:
    workdir = tmp_path_factory.mktemp("vision")
    store = workdir / "model-store"
    resnet = _archive(
        workdir,
        store=store,
        name="resnet18",
        model_source=vision.RESNET18_MODEL,
        handler_source=vision.IMAGENET_HANDLER,
        extra_files=[models.write_json(workdir / "resnet18-src" / "index_to_name.json", LABELS)],
    )
    digits = _archive(
        workdir,
        store=store,
        name="digits",
        model_source=vision.DIGIT_MODEL,
        handler_source=vision.DIGIT_HANDLER,
    )
    server = serving.start_server(
        workdir,
        model_args=["resnet18=resnet18.mar", "digits=digits.mar"],
        extra_args=["--model-store", str(store)],
    )
    try:
        yield VisionServer(server=server, resnet=resnet, digits=digits, images=workdir / "images")
    finally:
        serving.stop_server(server)


def _archive(
    workdir: Path,
    *,
    store: Path,
    name: str,
    model_source: str,
    handler_source: str,
    extra_files: list[Path] | None = None,
) -> torch.nn.Module:
    """Archives a model and its handler into `store`; returns the model to run directly."""
    source = workdir / f"{name}-src"
    model_file = source / "model.py"
    weights = source / "model.pth"
    model = vision.write_model(model_file, source=model_source, weights=weights)
    models.torch_model_archiver(
        model_name=name,
        handler=models.write_text(source / "handler.py", handler_source),
        export_path=store,
        model_file=model_file,
        serialized_file=weights,
        extra_files=extra_files or [],
    )
    return model


def _predict(server: serving.RunningServer, model: str, image: Path) -> Any:
    request = urllib.request.Request(
        f"{server.inference}/predictions/{model}",
        data=image.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("size", [(320, 240), (224, 224)])
def test_resnet18_top_classes_are_the_models(vision_server: VisionServer, size: tuple[int, int]):
    from PIL import Image
    from torchvision import transforms

    image = vision.write_image(vision_server.images / f"photo-{size[0]}.jpg", size=size, seed=1)
    reference = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    with torch.no_grad():
        logits = vision_server.resnet(reference(Image.open(image)).unsqueeze(0))
    probabilities, classes = torch.topk(torch.softmax(logits, dim=1)[0], 5)

    answer = _predict(vision_server.server, "resnet18", image)

    expected = {
        LABELS[str(c)]: p for c, p in zip(classes.tolist(), probabilities.tolist(), strict=True)
    }
    assert list(answer) == list(expected)
    assert list(answer.values()) == pytest.approx(list(expected.values()), abs=1e-5)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_digit_is_the_models(vision_server: VisionServer, seed: int):
    from PIL import Image
    from torchvision.transforms.functional import normalize, to_tensor

    image = vision.write_image(
        vision_server.images / f"digit-{seed}.png", size=(28, 28), mode="L", seed=seed
    )
    tensor = normalize(to_tensor(Image.open(image)), [0.1307], [0.3081])
    with torch.no_grad():
        expected = int(vision_server.digits(tensor.unsqueeze(0)).argmax(1))

    assert _predict(vision_server.server, "digits", image) == expected
