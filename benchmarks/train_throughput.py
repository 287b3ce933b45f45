"""Training throughput vs the raw forward+backward throughput of the same model and batch.

Issue acceptance: the training loop (m-per-class sampling, batch fetch, mining, metric loss,
optimiser step) runs at >= 80% of the images/s of a bare forward+backward pass.

    python benchmarks/train_throughput.py [--dataset fashion-mnist] [--steps 40] [--repeats 5]

Prints medians over repeats and the ratio measured in this one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from robustdml.engine.config import TrainConfig
from robustdml.engine.run_dir import RunDirectory
from robustdml.engine.trainer import Trainer, batches


def raw_images_per_second(model, images, steps: int) -> float:
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        model(images).sum().backward()
    return steps * images.shape[0] / (time.perf_counter() - start)


def training_images_per_second(trainer: Trainer, steps: int) -> float:
    trainer.sampler.set_epoch(0)
    stream = batches(trainer.train_source, trainer.sampler, 0, False)
    fetched = 0
    start = time.perf_counter()
    for _ in range(steps):
        try:
            images, labels = next(stream)
        except StopIteration:
            trainer.sampler.set_epoch(1)
            stream = batches(trainer.train_source, trainer.sampler, 0, False)
            images, labels = next(stream)
        trainer.train_step(images, labels)
        trainer.global_step += 1
        fetched += images.shape[0]
    return fetched / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--loss", default="triplet")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(dataset=args.dataset, loss=args.loss, device=args.device, progress=False,
                             output=tmp).resolved()
        trainer = Trainer(config, RunDirectory.create(tmp, []))
        images, _ = next(batches(trainer.train_source, trainer.sampler, 0, False))
        images = images.to(trainer.device)
        raw_images_per_second(trainer.model, images, 5)  # warm-up
        training_images_per_second(trainer, 5)
        raw, train = [], []
        for _ in range(args.repeats):
            raw.append(raw_images_per_second(trainer.model, images, args.steps))
            train.append(training_images_per_second(trainer, args.steps))
    raw_median, train_median = statistics.median(raw), statistics.median(train)
    print(f"model={config.model} batch={config.batch_size} loss={config.loss} miner={config.miner} "
          f"threads={torch.get_num_threads()} device={args.device}")
    print(f"raw forward+backward : {raw_median:8.1f} images/s (median of {args.repeats})")
    print(f"training loop        : {train_median:8.1f} images/s (median of {args.repeats})")
    print(f"ratio training/raw   : {train_median / raw_median:.3f} (target >= 0.80)")


if __name__ == "__main__":
    main()
