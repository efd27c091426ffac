"""Tiny networks importable by name (``tests.persistence._modules:TinyNet``), for the tests."""

from torch import nn


class TinyNet(nn.Module):
    """4 features in, 3 outputs: a small MLP whose last Linear is the head."""

    def __init__(self, n_hidden: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, n_hidden), nn.ReLU())
        self.fc = nn.Linear(n_hidden, 3)

    def forward(self, x):
        return self.fc(self.body(x))


class LazyNet(nn.Module):
    """A network whose first layer learns its input size on the first batch."""

    def __init__(self):
        super().__init__()
        self.body = nn.LazyLinear(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.body(x).relu())


def double(X):
    """A function for FunctionTransformer: a type skops does not trust by default."""
    return X * 2
