"""The small convnet for 28x28 inputs used throughout the seed papers' Fashion-MNIST experiments."""

from __future__ import annotations

from torch import nn


class SmallConvNet(nn.Module):
    """Two 5x5 conv blocks (conv -> BN -> ReLU -> 2x2 max-pool) and one hidden fully connected layer.

    The batch norms are there so MDProp/AdvProp can route each input distribution to its own BN.
    Output: a ``hidden_dim`` feature vector; the embedding head lives in :class:`EmbeddingModel`.
    """

    def __init__(self, in_channels: int = 1, input_size: int = 28, hidden_dim: int = 512,
                 channels: tuple[int, int] = (32, 64)):
        super().__init__()
        c1, c2 = channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=5, padding=2),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        spatial = input_size // 4
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * spatial * spatial, hidden_dim),
            nn.ReLU(inplace=True),
        )
        self.output_dim = hidden_dim

    def forward(self, x):
        return self.fc(self.conv(x))


class RC2F2(nn.Module):
    """RobRank's Fashion-MNIST/MNIST backbone ``rc2f2`` (robrank/models/template_rank.py,
    ``MetricTemplate28``): conv 5x5 -> 32 (padding 2), ReLU, 2x2 max-pool; conv 5x5 32 -> 64
    (padding 2), ReLU, 2x2 max-pool; FC 64*7*7 -> 1024, ReLU. No batch norm. The reference's last
    layer (FC 1024 -> 512, the embedding) is the head of :class:`EmbeddingModel`.
    Output: a 1024-d feature vector.
    """

    def __init__(self, in_channels: int = 1, input_size: int = 28):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        spatial = input_size // 4
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * spatial * spatial, 1024), nn.ReLU(inplace=True))
        self.output_dim = 1024

    def forward(self, x):
        return self.fc(self.conv(x))


class MLP(nn.Module):
    """A small fully connected backbone for vector inputs (the synthetic two-Gaussian set)."""

    def __init__(self, input_dim: int, hidden_dim: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(input_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
        )
        self.output_dim = hidden_dim

    def forward(self, x):
        return self.net(x)
