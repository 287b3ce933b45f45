"""Two gloo processes on CPU must compute what one process computes on the same global batch."""

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from robustdml.defenses import build_defense
from robustdml.engine.distributed import DistributedContext, shutdown_distributed

STEPS = 5
GLOBAL_BATCH = 16


class _UnitEmbedding(nn.Module):
    """No batch norm: BN statistics are per rank by design, everything else must match exactly."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x):
        return F.normalize(self.net(x), dim=1)


def _data():
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(4).repeat_interleave(GLOBAL_BATCH // 4)
    inputs = torch.randn(STEPS, GLOBAL_BATCH, 6, generator=generator) + labels[None, :, None].float()
    return inputs, labels


# The default (every triplet, PML's mean over non-zero losses) and RobRank's SPC-2 recipe: the global
# batch [0,0,0,0,1,1,1,1,...] is also a pair batch, and rank slices hold whole pairs, so the
# spc2-random miner sees the pairs adjacent in the gathered batch.
RECIPES = {"all": dict(miner="all"), "spc2": dict(miner="spc2-random", loss_options={"reduction": "mean"})}


def _train(context: DistributedContext, device: str = "cpu", recipe: str = "all"):
    torch.manual_seed(0)
    model = _UnitEmbedding().to(device)
    defense = build_defense("natural", loss="triplet", **RECIPES[recipe])
    defense.embedding_hook = context.gather_embeddings
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    inputs, labels = (tensor.to(device) for tensor in _data())
    share = GLOBAL_BATCH // context.world_size
    mine = slice(context.rank * share, (context.rank + 1) * share)
    losses = []
    for step in range(STEPS):
        output = defense.step(model, inputs[step, mine], labels[mine], torch.Generator())
        optimizer.zero_grad()
        output.loss.backward()
        context.sum_gradients(model)
        optimizer.step()
        losses.append(output.loss.item())
    return {name: value.cpu() for name, value in model.state_dict().items()}, losses


def _worker(rank, world_size, port, queue, backend, device, recipe):
    import torch.distributed as dist

    if device.startswith("cuda"):  # one GPU per rank when there are enough, else ranks share GPU 0
        device = f"cuda:{rank % torch.cuda.device_count()}"
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    context, finished = DistributedContext(rank=rank, world_size=world_size), False
    try:
        state, losses = _train(context, device, recipe)
        if rank == 0:
            queue.put(({k: v.numpy().copy() for k, v in state.items()}, losses))  # no shared memory
        finished = True
    finally:
        # as the trainer leaves: wait for the peer before tearing gloo down (a rank that destroys the
        # group while the other still holds its connection can abort that rank: SIGABRT, exit code -6)
        shutdown_distributed(context, wait_for_peers=finished)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _assert_two_ranks_match_one_process(backend: str, device: str, tolerance: float, recipe: str = "all"):
    single_state, single_losses = _train(DistributedContext(), device, recipe)
    context = mp.get_context("spawn")
    queue = context.Queue()
    port = _free_port()
    processes = [context.Process(target=_worker, args=(rank, 2, port, queue, backend, device, recipe))
                 for rank in range(2)]
    for process in processes:
        process.start()
    state, losses = queue.get(timeout=120)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert losses == pytest.approx(single_losses, rel=tolerance, abs=tolerance / 10)
    for name, value in single_state.items():
        assert torch.allclose(torch.from_numpy(state[name]), value, atol=tolerance), name


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_two_gloo_ranks_equal_single_process_on_the_global_batch(recipe):
    _assert_two_ranks_match_one_process("gloo", "cpu", 1e-5, recipe)


_CUDA = torch.cuda.is_available()
_TWO_GPUS = _CUDA and torch.cuda.device_count() >= 2 and torch.distributed.is_nccl_available()


@pytest.mark.parametrize("backend", [
    pytest.param("gloo", marks=pytest.mark.skipif(not _CUDA, reason="needs CUDA")),
    # NCCL refuses two ranks on one GPU ("Duplicate GPU detected"), so it needs two GPUs.
    pytest.param("nccl", marks=pytest.mark.skipif(not _TWO_GPUS, reason="needs NCCL and two GPUs")),
])
def test_two_ranks_on_cuda_tensors_equal_single_process(backend):
    """The GPU path: all-gather / all-reduce of CUDA tensors (TF32 off so CUDA matmuls are near-exact)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    _assert_two_ranks_match_one_process(backend, "cuda:0", 1e-4)
