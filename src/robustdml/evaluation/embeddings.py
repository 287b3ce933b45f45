"""Embed a whole dataset with a model: in batches, in eval mode, without gradients, in dataset order.

Eval mode matters (BatchNorm statistics, dropout); the caller's train/eval mode is restored after.
Datasets with a fast ``get_batch(indices)`` (whole-tensor datasets of the data layer) skip the
DataLoader's per-item collation; anything else goes through a DataLoader, and a ready DataLoader
is used as it is (its order defines the output order). The first batch must hold float pixels in [0,1]
(``check_pixel_range``).
"""

from __future__ import annotations

from typing import Iterable, Tuple

import numpy as np
import torch

from robustdml.data.checks import check_pixel_range
from robustdml.models.mode import eval_mode
from robustdml.progress import progress_bar


def _batches(data, batch_size: int, num_workers: int, pin_memory: bool) -> Tuple[Iterable, int]:
    """(iterator over (images, labels) batches, number of batches)."""
    if isinstance(data, torch.utils.data.DataLoader):
        return data, len(data)
    if len(data) == 0:
        raise ValueError("the dataset is empty; there is nothing to embed")
    if hasattr(data, "get_batch"):
        starts = range(0, len(data), batch_size)
        return (data.get_batch(np.arange(s, min(s + batch_size, len(data)))) for s in starts), len(starts)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         pin_memory=pin_memory)
    return loader, len(loader)


def _check_model_device(model: torch.nn.Module, device: torch.device) -> None:
    parameter = next(model.parameters(), None)
    if parameter is not None and parameter.device.type != device.type:
        raise ValueError(f"the model is on {parameter.device} but device={str(device)!r}; "
                         f"call model.to({str(device)!r}) first or pass device={str(parameter.device)!r}")


def compute_embeddings(model: torch.nn.Module, dataset_or_loader, batch_size: int = 256, device="cpu",
                       progress: bool = True, num_workers: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (float32 [N, D], on the CPU) and labels (int64 [N]) of every item, in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    _check_model_device(model, device)
    batches, total = _batches(dataset_or_loader, batch_size, num_workers, pin_memory=device.type == "cuda")
    outputs, labels = [], []
    # no_grad rather than inference_mode: the outputs are used as constant targets by attacks,
    # and inference tensors cannot take part in autograd.
    with torch.no_grad(), eval_mode(model):
        bar = progress_bar(batches, total=total, desc="embedding", unit="batch", disable=not progress, leave=False)
        for index, (images, batch_labels) in enumerate(bar):
            if index == 0:  # one look: 0..255 or mean/std-normalised images would run and mean nothing
                check_pixel_range(images, "compute_embeddings: the first batch")
            embedded = model(images.to(device, non_blocking=True))
            if not isinstance(embedded, torch.Tensor) or embedded.ndim != 2:
                raise ValueError("the model must return a [batch, dim] embedding tensor, got "
                                 f"{type(embedded).__name__} {getattr(embedded, 'shape', '')}")
            outputs.append(embedded.float().cpu())
            if not isinstance(batch_labels, torch.Tensor):
                batch_labels = torch.as_tensor(np.asarray(batch_labels))
            labels.append(batch_labels.cpu().reshape(-1))
    if not outputs:
        raise ValueError("the data loader yielded no batches; there is nothing to embed")
    return torch.cat(outputs), torch.cat(labels).long()
