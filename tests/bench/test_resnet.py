"""The forward-bound workload is a real ResNet-18 in size and shape, and TorchScript takes it."""

from __future__ import annotations

import torch

from marbench import resnet


def test_resnet18_has_the_published_parameter_count_and_scripts() -> None:
    model = resnet.make_resnet18()
    # torchvision's resnet18() has 11,689,512 parameters: same layers, same count.
    assert sum(parameter.numel() for parameter in model.parameters()) == 11_689_512

    image = torch.rand(2, 3, 224, 224)
    scripted = torch.jit.script(model)
    with torch.inference_mode():
        assert torch.allclose(scripted(image), model(image), atol=1e-5)
        assert model(image).shape == (2, resnet.CLASSES)
