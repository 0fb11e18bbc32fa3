"""The transformer MLP. The activation is an explicit config field: OpenAI CLIP was trained with QuickGELU,
LAION open_clip models and BERT with exact (erf) GELU; loading one with the other's silently degrades it."""

import torch
from torch import nn


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x). `inplace` (as nn.ReLU's) saves a pass over the MLP's widest activation when no
    gradient is recorded; with one, it computes out of place."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(1.702 * x)
        if self.inplace and not (torch.is_grad_enabled() and x.requires_grad):
            return x.mul_(gate)
        return x * gate


ACTIVATIONS = {"quick_gelu": QuickGELU, "gelu": nn.GELU}


def activation(name: str, inplace: bool = False) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
    return QuickGELU(inplace) if name == "quick_gelu" else ACTIVATIONS[name]()


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = activation(act, inplace=True)  # it only ever sees fc1's fresh output
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
