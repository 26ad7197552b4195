"""Integrated gradients: how much each input element pushed the model towards a target class.

This is what TorchServe's vision handlers answer on `/explanations` (through Captum, which
marserve does not depend on): the gradient averaged along the straight path from a black image
to the input, times the input, with Captum's default Gauss-Legendre quadrature.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def integrated_gradients(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    *,
    target: int,
    n_steps: int = 15,
) -> torch.Tensor:
    """Attributions shaped like `inputs` for output column `target`, from a zero baseline."""
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    inputs = inputs.detach()
    averaged = torch.zeros_like(inputs)
    for node, weight in zip(nodes, weights, strict=True):
        alpha = float(node + 1) / 2
        point = (alpha * inputs).requires_grad_(True)
        with torch.enable_grad():
            scores = model(point)[:, target]
            (gradient,) = torch.autograd.grad(scores.sum(), point)
        averaged += float(weight) / 2 * gradient
    return inputs * averaged
