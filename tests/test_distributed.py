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
from robustdml.engine.distributed import DistributedContext

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


def _train(context: DistributedContext):
    torch.manual_seed(0)
    model = _UnitEmbedding()
    defense = build_defense("natural", loss="triplet", miner="all")
    defense.embedding_hook = context.gather_embeddings
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    inputs, labels = _data()
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
    return model.state_dict(), losses


def _worker(rank, world_size, port, queue):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        state, losses = _train(DistributedContext(rank=rank, world_size=world_size))
        if rank == 0:
            queue.put(({k: v.numpy().copy() for k, v in state.items()}, losses))  # no shared memory
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_ranks_equal_single_process_on_the_global_batch():
    single_state, single_losses = _train(DistributedContext())
    context = mp.get_context("spawn")
    queue = context.Queue()
    port = _free_port()
    processes = [context.Process(target=_worker, args=(rank, 2, port, queue)) for rank in range(2)]
    for process in processes:
        process.start()
    state, losses = queue.get(timeout=120)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert losses == pytest.approx(single_losses, rel=1e-5, abs=1e-6)
    for name, value in single_state.items():
        assert torch.allclose(torch.from_numpy(state[name]), value, atol=1e-5), name


@pytest.mark.slow
def test_torchrun_end_to_end_on_synthetic_data(tmp_path):
    """The real entry point: torchrun launching `robustdml train` with 2 CPU ranks."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "robustdml.cli", "train", "--dataset", "synthetic-gaussian",
               "--epochs", "2", "--batch-size", "32", "--samples-per-class", "16", "--no-progress",
               "--device", "cpu", "--output", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "results.json").is_file()
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
