"""torch.distributed support for ``torchrun --nproc_per_node N robustdml train ...``.

Strategy, chosen so that N processes compute exactly what one process computes on the global batch:
- every rank embeds its own slice of the global batch (both samplers are rank-aware; SPC-2 pairs stay on one rank);
- embeddings and labels are all-gathered so the metric loss (and its miner) sees the whole global
  batch, cross-rank negatives included; each rank's own slice keeps its autograd graph;
- every rank therefore computes the same global loss, and the gradient of that loss splits into the
  ranks' slices: summing parameter gradients across ranks gives exactly the single-process gradient.
No DistributedDataParallel wrapper: defenses run many extra forward/backward passes per step
(adversaries), which DDP's reducer does not allow; explicit gradient summation does.
Batch norm statistics stay per rank (as with plain DDP); models without BN match exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Tuple

import torch
import torch.distributed as dist


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather_embeddings(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Global-batch embeddings (own slice differentiable, others constants) and labels, in rank order."""
        if not self.enabled:
            return embeddings, labels
        gathered = [torch.empty_like(embeddings) for _ in range(self.world_size)]
        dist.all_gather(gathered, embeddings.detach().contiguous())
        gathered[self.rank] = embeddings
        gathered_labels = [torch.empty_like(labels) for _ in range(self.world_size)]
        dist.all_gather(gathered_labels, labels.contiguous())
        return torch.cat(gathered), torch.cat(gathered_labels)

    def sum_gradients(self, model: torch.nn.Module) -> None:
        if not self.enabled:
            return
        for parameter in model.parameters():
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (e.g. the run directory name)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device_type: str = "cpu") -> DistributedContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); a no-op otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" and torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown_distributed(context: DistributedContext, wait_for_peers: bool = True) -> None:
    """Leave the process group; after an error, leave without waiting for peers that may never come."""
    if context.enabled and dist.is_initialized():
        if wait_for_peers:
            dist.barrier()
        dist.destroy_process_group()
