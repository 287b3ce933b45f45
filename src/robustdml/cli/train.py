"""``robustdml train`` and ``robustdml evaluate``: the training flags (each a TrainConfig field) and what they run."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import yaml

from robustdml.options import number


def parse_key_values(pairs: Optional[List[str]], flag: str) -> Dict[str, Any]:
    """``key=value`` pairs with YAML-typed values (``eps=0.1`` -> float, ``lga=true`` -> bool, ``1e-3`` -> float)."""
    from robustdml.engine.config import ConfigError, parse_yaml

    options: Dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"{flag} expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            options[key.strip().replace("-", "_")] = parse_yaml(value)
        except yaml.YAMLError:
            raise ConfigError(f"{flag} {pair}: {value!r} is not a valid value (quote text that holds ':' or '#')") from None
    return options


# (flag, config field, type, help)
TRAIN_FLAGS = [
    ("--dataset", "dataset", str, "dataset name (see `robustdml data --list`)"),
    ("--data-root", "data_root", str, "folder holding the dataset"),
    ("--image-size", "image_size", int, "crop size for image benchmarks (default 224)"),
    ("--train-per-class", "train_per_class", int, "CPU-sized subset: at most N training images per class"),
    ("--train-fraction", "train_fraction", number, "class-stratified fraction of training data (data-scarce setting)"),
    ("--val-fraction", "val_fraction", number, "validation split carved from training data (default 0.1)"),
    ("--test-per-class", "test_per_class", int, "evaluate on at most N test images per class"),
    ("--model", "model", str, "convnet | mlp | resnet18 | resnet50 (default by dataset)"),
    ("--embedding-dim", "embedding_dim", int, "embedding size (default 128)"),
    ("--pretrained", "pretrained", str, "imagenet | none | PATH to a torchvision state dict (ResNets)"),
    ("--loss", "loss", str, "contrastive | triplet | margin | multi-similarity"),
    ("--miner", "miner", str, "all | distance-weighted | semihard | hardest | spc2-random (needs --sampler pairs)"),
    ("--defense", "defense", str, "natural or an adversarial training defense"),
    ("--epochs", "epochs", int, "training epochs"),
    ("--batch-size", "batch_size", int, "global batch size"),
    ("--samples-per-class", "samples_per_class", int, "m in m-per-class batches"),
    ("--sampler", "sampler", str, "m-per-class (default) | pairs (RobRank's SPC-2: each anchor followed by a random "
                                  "positive)"),
    ("--lr", "lr", number, "Adam learning rate"),
    ("--weight-decay", "weight_decay", number, "Adam weight decay"),
    ("--steps-per-epoch", "steps_per_epoch", int, "batches per epoch (default: dataset size / batch)"),
    ("--seed", "seed", int, "seed of the run's random generator"),
    ("--device", "device", str, "auto | cpu | cuda | cuda:N"),
    ("--amp", "amp", str, "none | bf16 | fp16 mixed precision (GPU)"),
    ("--num-workers", "num_workers", int, "data loader workers for on-disk image sets"),
    ("--checkpoint-every", "checkpoint_every", int, "write checkpoints/last.pt every N steps"),
    ("--output", "output", str, "run directory (default runs/<time>-<dataset>-<loss>-<defense>)"),
]

# Shorthands for the options every defense shares.
DEFENSE_FLAGS = [
    ("--eps", "eps", number, "attack radius in pixel units (e.g. 0.01, 8/255=0.0314)"),
    ("--attack-steps", "steps", int, "PGD iterations eta of the training adversary"),
    ("--step-size", "step_size", number, "PGD step size"),
    ("--attack-rate", "attack_rate", number, "probability that a tuple is perturbed (robust-pair/triplet)"),
]


def add_train_parser(sub) -> None:
    parser = sub.add_parser("train", help="train an embedding model (naturally or with a defense)")
    parser.add_argument("--config", help="YAML file of TrainConfig fields")
    for flag, dest, kind, help_text in TRAIN_FLAGS + DEFENSE_FLAGS:
        parser.add_argument(flag, dest=f"opt_{dest}", type=kind, default=None, metavar=dest.upper(), help=help_text)
    parser.add_argument("--channels-last", action="store_true", default=None, help="channels_last memory format (GPU)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--defense-option", action="append", metavar="KEY=VALUE", help="any defense option")
    parser.add_argument("--loss-option", action="append", metavar="KEY=VALUE", help="any loss option, e.g. margin=0.1")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last checkpoint; flags given again must match its "
                             "config, except --epochs (more), --device, --no-progress, --num-workers, --checkpoint-every")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --output (its checkpoints, metrics and reports are deleted)")
    parser.set_defaults(handler=_cmd_train)


def explicit_train_values(args) -> Dict[str, Any]:
    """The TrainConfig fields this command sets: the --config file's, overridden by the flags given."""
    from robustdml.engine.config import TrainConfig

    values: Dict[str, Any] = TrainConfig.read(args.config) if args.config else {}
    for _flag, dest, _kind, _help in TRAIN_FLAGS:
        value = getattr(args, f"opt_{dest}")
        if value is not None:
            values[dest] = value
    if args.channels_last:
        values["channels_last"] = True
    if args.no_progress:
        values["progress"] = False
    defense_options = dict(values.get("defense_options") or {})
    for _flag, key, _kind, _help in DEFENSE_FLAGS:
        value = getattr(args, f"opt_{key}")
        if value is not None:
            defense_options[key] = value
    defense_options.update(parse_key_values(args.defense_option, "--defense-option"))
    loss_options = dict(values.get("loss_options") or {})
    loss_options.update(parse_key_values(args.loss_option, "--loss-option"))
    for name, options in (("defense_options", defense_options), ("loss_options", loss_options)):
        if options:
            values[name] = options
    return values


def build_train_config(args):
    from robustdml.engine.config import TrainConfig

    return TrainConfig.from_dict({**TrainConfig().to_dict(), **explicit_train_values(args)}).resolved()


def _cmd_train(args) -> int:
    from robustdml.engine.trainer import train

    if args.resume:
        run, results = train(None, resume_dir=args.resume, changes=explicit_train_values(args))
    else:
        run, results = train(build_train_config(args), overwrite=args.overwrite)
    print(f"run directory: {run.path}")
    print(json.dumps(results, indent=2, sort_keys=True))
    return 0


def add_evaluate_parser(sub) -> None:
    parser = sub.add_parser("evaluate", help="retrieval metrics (R@k, mAP@R, NMI) of a trained run on its test split")
    parser.add_argument("run_dir")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best",
                        help="best (selected on validation) or last checkpoint")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bn", default="clean", help="batch norm of multi-BN models (MDProp: clean|stax|mtax|uax)")
    parser.set_defaults(handler=_cmd_evaluate)


def _cmd_evaluate(args) -> int:
    from robustdml.engine.evaluate import evaluate_run

    record = evaluate_run(args.run_dir, checkpoint=args.checkpoint, device=args.device, distribution=args.bn)
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0
