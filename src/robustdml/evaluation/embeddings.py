"""Embed a whole dataset with a model, in batches, in eval mode, without gradients."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from tqdm.auto import tqdm


@torch.inference_mode()
def compute_embeddings(model: torch.nn.Module, dataset, batch_size: int = 256, device="cpu", progress: bool = True,
                       num_workers: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    was_training = model.training
    model.eval()
    device = torch.device(device)
    outputs, labels = [], []
    try:
        if hasattr(dataset, "get_batch"):
            order = np.arange(len(dataset))
            chunks = (dataset.get_batch(order[i: i + batch_size]) for i in range(0, len(order), batch_size))
            total = (len(order) + batch_size - 1) // batch_size
        else:
            chunks = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                                 pin_memory=device.type == "cuda")
            total = len(chunks)
        for images, batch_labels in tqdm(chunks, total=total, desc="embedding", disable=not progress, leave=False):
            outputs.append(model(images.to(device, non_blocking=True)).float().cpu())
            labels.append(torch.as_tensor(batch_labels))
    finally:
        model.train(was_training)
    return torch.cat(outputs), torch.cat(labels).long()
