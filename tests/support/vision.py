"""torchvision models, handlers and images for the vision checks: written here, never downloaded.

torchvision imports only beside the torch build it was made for, so the checks that need it are
marked `vision` and run in their own environment (`make compat`); elsewhere they skip, saying why.
The model and handler sources are what archives found in the wild look like: a `model.py` that
builds a torchvision model class, and a handler whose preprocessing is `torchvision.transforms`.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from pathlib import Path

import pytest
import torch
from PIL import Image

from support import models


@functools.cache
def torchvision_problem() -> str | None:
    """Why torchvision cannot run here, or None when it imports and its C++ operators work."""
    try:
        import torchvision

        torchvision.ops.nms(torch.zeros(0, 4), torch.zeros(0), iou_threshold=0.5)
    except Exception as error:
        return (
            f"torchvision does not work beside torch {torch.__version__} here ({error!r}); "
            "`make compat` runs these checks where it does"
        )
    return None


MARKS = [
    pytest.mark.vision,
    pytest.mark.skipif(torchvision_problem() is not None, reason=str(torchvision_problem())),
]
"""`pytestmark` for a module of vision checks."""

RESNET18_MODEL = """
    from torchvision.models.resnet import BasicBlock, ResNet


    class ImageClassifier(ResNet):
        \"\"\"ResNet-18 as torchvision builds it; the serialized file holds the weights.\"\"\"

        def __init__(self):
            super().__init__(BasicBlock, [2, 2, 2, 2])
"""

IMAGENET_HANDLER = """
    from torchvision import transforms

    from ts.torch_handler.image_classifier import ImageClassifier


    class TorchvisionImageClassifier(ImageClassifier):
        \"\"\"ImageNet preprocessing written with torchvision, as most published handlers do.\"\"\"

        image_processing = transforms.Compose(
            [
                transforms.Resize(256),
                transforms.CenterCrop(224),
                transforms.ToTensor(),
                transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
            ]
        )
"""

DIGIT_MODEL = """
    import torch
    from torch import nn


    class DigitNet(nn.Module):
        \"\"\"Ten digit scores for a 28x28 grey image: a convolution, then a linear layer.\"\"\"

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, kernel_size=3)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(8 * 13 * 13, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))
"""

DIGIT_HANDLER = """
    from torchvision import transforms

    from ts.torch_handler.image_classifier import ImageClassifier


    class MNISTDigitClassifier(ImageClassifier):
        \"\"\"The most likely digit of each 28x28 grey image.\"\"\"

        image_processing = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
        )

        def postprocess(self, data):
            return data.argmax(1).tolist()
"""


def write_model(model_file: Path, *, source: str, weights: Path, seed: int = 0) -> torch.nn.Module:
    """Writes `source` as `model_file` and the state_dict of its model class, built with
    deterministic weights, as `weights`; returns that model in eval mode to run directly."""
    models.write_text(model_file, source)
    spec = importlib.util.spec_from_file_location(f"vision_model_{model_file.stem}", model_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (model_class,) = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, torch.nn.Module)
        and value.__module__ == module.__name__
    ]
    torch.manual_seed(seed)
    model: torch.nn.Module = model_class().eval()
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), weights)
    return model


def write_image(path: Path, *, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    """A noise picture of `size` (width, height) saved in the format `path`'s suffix names."""
    generator = torch.Generator().manual_seed(seed)
    channels = len(mode)
    pixels = torch.randint(0, 256, (size[1], size[0], channels), generator=generator)
    array = pixels.to(torch.uint8).squeeze(-1).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path
