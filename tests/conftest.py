"""Shared fixtures: a small naturally trained Fashion-MNIST model (trained once per test session) and a
file server on localhost (download tests never touch the internet)."""

import functools
import http.server
import socket
import threading
from pathlib import Path

import pytest
import torch

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _fashion_mnist_available() -> bool:
    from robustdml.data.mnist import fashion_mnist_search_path

    return any((folder / "t10k-images-idx3-ubyte.gz").is_file() or (folder / "t10k-images-idx3-ubyte").is_file()
               for folder in fashion_mnist_search_path(None))


needs_fashion_mnist = pytest.mark.skipif(not _fashion_mnist_available(),
                                         reason="Fashion-MNIST not on disk (apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="session")
def natural_fmnist_run(tmp_path_factory):
    """A convnet trained naturally (triplet, 2 epochs on 300 images per class): test R@1 ~ 0.8."""
    if not _fashion_mnist_available():
        pytest.skip("Fashion-MNIST not on disk")
    from robustdml.engine.config import TrainConfig
    from robustdml.engine.trainer import train

    output = tmp_path_factory.mktemp("runs") / "natural"
    config = TrainConfig(dataset="fashion-mnist", train_per_class=300, test_per_class=60, epochs=2,
                         progress=False, device="cpu", output=str(output))
    run, results = train(config)
    return run.path, results


@pytest.fixture(scope="session")
def natural_fmnist(natural_fmnist_run):
    from robustdml.engine.evaluate import load_run

    loaded = load_run(natural_fmnist_run[0], device="cpu")
    return loaded.model, loaded.splits.test


# A tiny synthetic run through the CLI: 6 steps per epoch, a checkpoint every 4 steps.
SYNTHETIC = ["--dataset", "synthetic-gaussian", "--no-progress", "--device", "cpu", "--steps-per-epoch", "6",
             "--checkpoint-every", "4"]


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A finished 2-epoch synthetic run; tests that change it use ``run_copy``."""
    from robustdml.cli import main

    run = tmp_path_factory.mktemp("runs") / "finished"
    assert main(["train", *SYNTHETIC, "--epochs", "2", "--output", str(run)]) == 0
    return run


@pytest.fixture
def run_copy(finished_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


@pytest.fixture
def file_server(tmp_path):
    """Serves ``tmp_path / "served"`` over http on localhost; yields (folder, base URL, requested paths)."""
    folder = tmp_path / "served"
    folder.mkdir()
    requested = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/", requested
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def offline_url():
    """A URL nothing answers (a localhost port that was free a moment ago): what a machine without internet sees."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
