import torch


class TinyMLP(torch.nn.Module):
    """An 8 -> 16 -> 4 MLP: the architecture file that eager-mode archives carry."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
