"""Writes the example's weights: a few hundred steps on a synthetic iris-like data set.

Usage: python -P examples/iris/train.py OUTPUT.pth  (deterministic, about a second on a CPU).
"""

import importlib.util
import sys
from pathlib import Path

import torch

CENTRES = torch.tensor([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]])


def main(output: Path) -> None:
    spec = importlib.util.spec_from_file_location("model", Path(__file__).with_name("model.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    labels = torch.arange(3).repeat_interleave(50)
    features = CENTRES[labels] + 0.3 * torch.randn(150, 4)
    model = module.IrisClassifier()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(features), labels)
        loss.backward()
        optimiser.step()
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), output)
    print(f"wrote {output} (training loss {loss.item():.3f})")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
