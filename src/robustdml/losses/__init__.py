"""Metric losses and miners: thin, named adapters over pytorch-metric-learning."""

from robustdml.losses.metric import LOSSES, MINERS, build_loss, build_miner, loss_kind

__all__ = ["LOSSES", "MINERS", "build_loss", "build_miner", "loss_kind"]
