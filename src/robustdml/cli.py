"""``robustdml`` command line: train | evaluate | attack | certify | benchmark | report | data.

Flags override the YAML given with ``--config``, which overrides per-dataset defaults. Every
invalid value is rejected before any work starts, with the field named. Exit status: 0 done,
2 a user error (one line naming the file/field/value and the fix), 1 a runtime failure (one line,
with where the last good checkpoint is) or an internal error, 130 interrupted; ``--debug`` adds
the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from robustdml.certify.command import add_certify_parser
from robustdml.options import number


def _parse_key_values(pairs: Optional[List[str]], flag: str) -> Dict[str, Any]:
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


def _add_train_parser(sub) -> None:
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
    defense_options.update(_parse_key_values(args.defense_option, "--defense-option"))
    loss_options = dict(values.get("loss_options") or {})
    loss_options.update(_parse_key_values(args.loss_option, "--loss-option"))
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


def _add_evaluate_parser(sub) -> None:
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


ATTACK_QUERIES, REPORT_QUERIES = 1000, 300  # CPU-sized defaults of --max-queries


def _add_spec_flags(parser, max_queries: int) -> None:
    """The flags of an attack specification, built from its metadata (robustdml.robustness.flags)."""
    from robustdml.robustness.flags import add_spec_flags

    add_spec_flags(parser, max_queries)


def _spec_from_args(args, max_queries: int):
    """The spec of the flags; the ERS profile's eps is the one for the run's input size."""
    from robustdml.robustness.flags import spec_from_args

    run_dir = getattr(args, "run_dir", None) or args.run_dirs[0]
    return spec_from_args(args, _input_size(run_dir), max_queries)


def _input_size(run_dir) -> int:
    """The side of the run's input images, for the ERS profile: the configured crop, else the dataset's own
    (its registry entry); vector data counts as small inputs (28)."""
    from robustdml.data import dataset_spec
    from robustdml.engine.config import TrainConfig
    from robustdml.engine.run_dir import RunDirectory

    config = TrainConfig.load(RunDirectory.open(run_dir).config_path, run_directory=True).resolved()
    return config.image_size or dataset_spec(config.dataset).input_size or 28


def _add_attack_parser(sub) -> None:
    parser = sub.add_parser("attack", help="robustness of a trained run: attacks x eps, worst case, checks, ERS")
    parser.add_argument("run_dir")
    _add_spec_flags(parser, max_queries=ATTACK_QUERIES)
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bn", default="clean", help="batch norm of multi-BN models (MDProp: clean|stax|mtax)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the query sample and random starts")
    parser.add_argument("--output", help="also copy the report into this folder (default: RUN_DIR/robustness/<key>)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=_cmd_attack)


def _cmd_attack(args) -> int:
    import shutil

    from robustdml.robustness import render
    from robustdml.robustness.spec import AttackProtocol
    from robustdml.robustness.store import RunSource, robustness_for, stored_result

    protocol = AttackProtocol(spec=_spec_from_args(args, ATTACK_QUERIES), seeds=(args.seed,))
    source = RunSource.open(args.run_dir, args.checkpoint)
    folder = source.folder(protocol, args.seed, args.bn)
    if stored_result(folder) is not None:
        print(f"reusing the result of the same attack spec, checkpoint, data, BN and seed in {folder}")
    result = robustness_for(Path(args.run_dir), protocol, args.seed, device=args.device, progress=not args.no_progress,
                            checkpoint=args.checkpoint, bn=args.bn, source=source)
    if args.output:
        shutil.copytree(folder, args.output, dirs_exist_ok=True)
    print(render.to_markdown(result))
    print(f"report written to {folder}" + (f" and {args.output}" if args.output else ""))
    return 0


def _add_benchmark_parser(sub) -> None:
    from robustdml.reporting.suites import SUITES

    parser = sub.add_parser("benchmark", help="run a whole experiment protocol and write one report directory")
    parser.add_argument("suite", choices=SUITES.names())
    parser.add_argument("--full", action="store_true", help="paper-sized setting (default: CPU-sized)")
    parser.add_argument("--eta", type=int, help="PGD steps of the training adversaries (robrank-fashion: of its "
                        "equal-cost runs; the published runs keep eta 32)")
    parser.add_argument("--epochs", type=int, help="override every run's epochs")
    parser.add_argument("--runs", help="comma-separated names of the suite's runs to do (default: all)")
    parser.add_argument("--output", help="report directory (default reports/<suite>)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=_cmd_benchmark)


def _cmd_benchmark(args) -> int:
    from robustdml.reporting.runner import run_suite
    from robustdml.reporting.suites import build_suite, select_runs

    if args.eta is not None and args.eta < 1:
        raise ValueError(f"--eta must be >= 1, got {args.eta}")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    suite = build_suite(args.suite, full=args.full, eta=args.eta)
    if args.runs:
        suite = select_runs(suite, args.runs.split(","))
    overrides = {"epochs": args.epochs} if args.epochs is not None else {}
    command = " ".join(["robustdml benchmark", args.suite] + (["--full"] if args.full else [])
                       + [f"--{name} {value}" for name, value in (("eta", args.eta), ("epochs", args.epochs),
                                                                   ("runs", args.runs)) if value])
    folder = run_suite(suite, args.output or f"reports/{args.suite}", device=args.device,
                       progress=not args.no_progress, overrides=overrides, command=command)
    print((folder / "report.md").read_text())
    print(f"report written to {folder}/report.md and report.html")
    return 0


def _add_report_parser(sub) -> None:
    parser = sub.add_parser("report", help="rebuild a report from run directories, without retraining")
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--output", default="reports/report")
    _add_spec_flags(parser, max_queries=REPORT_QUERIES)
    parser.add_argument("--seeds", type=int, default=1, help="number of attack seeds (mean ± std)")
    parser.add_argument("--device", default="auto")
    parser.set_defaults(handler=_cmd_report)


def _cmd_report(args) -> int:
    from robustdml.engine.run_marker import refuse_output_in_run
    from robustdml.reporting.report import build_report
    from robustdml.robustness.spec import AttackProtocol

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    refuse_output_in_run(args.output)  # the report's results.json would replace the run's own
    protocol = AttackProtocol(spec=_spec_from_args(args, REPORT_QUERIES), seeds=tuple(range(args.seeds)))
    folder = build_report([Path(p) for p in args.run_dirs], Path(args.output), protocol=protocol,
                          command="robustdml report " + " ".join(args.run_dirs), device=args.device)
    print(f"report written to {folder}/report.md and report.html")
    return 0


def _add_data_parser(sub) -> None:
    parser = sub.add_parser("data", help="fetch a dataset (checksum-verified download), or say where to get it")
    parser.add_argument("name", nargs="?", help="dataset name")
    parser.add_argument("--root", "--data-root", dest="root",
                        help="the dataset's folder (what --data-root takes; default ./data/<dataset>)")
    parser.add_argument("--no-download", action="store_true", help="only check whether the dataset is there")
    parser.add_argument("--list", action="store_true", help="list dataset names")
    parser.set_defaults(handler=_cmd_data)


def _cmd_data(args) -> int:
    from robustdml.data import DATASETS, fetch

    if args.list or not args.name:
        print("\n".join(DATASETS.names()))
        return 0
    lines: List[str] = []
    ready = fetch(args.name, root=args.root, report=lines.append, allow_download=not args.no_download)
    for line in lines if ready else lines[:-1]:
        print(line)
    if not ready:
        print(f"error: {lines[-1]}", file=sys.stderr)
    return 0 if ready else 2


def _add_console_flags(parser, default) -> None:
    """-q/-v/--threads (robustdml.console), on the main parser and again on every command."""
    parser.add_argument("-q", "--quiet", action="count", default=default(0),
                        help="less output: -q hides progress bars and notes, -qq warnings too")
    parser.add_argument("-v", "--verbose", action="count", default=default(0), help="more output (debug notes)")
    parser.add_argument("--threads", type=int, default=default(None), metavar="N",
                        help="CPU threads for torch (default: the CPUs this process may use)")


def build_parser() -> argparse.ArgumentParser:
    from robustdml import __version__

    parser = argparse.ArgumentParser(prog="robustdml", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"robustdml {__version__}")
    _add_console_flags(parser, default=lambda value: value)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(sub)
    _add_evaluate_parser(sub)
    _add_attack_parser(sub)
    add_certify_parser(sub)
    _add_benchmark_parser(sub)
    _add_report_parser(sub)
    _add_data_parser(sub)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    for name, command in sub.choices.items():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an error")
        _add_console_flags(command, default=lambda value: argparse.SUPPRESS)
        if name != "data":
            command.add_argument("--faiss", choices=("auto", "gpu", "cpu"), default="auto",
                                 help="where faiss kNN search and k-means run (default auto: GPU when "
                                      "faiss-gpu is installed and sees one)")
    return parser


# What Ctrl-C leaves behind, per command (train says where its checkpoint is: RunInterrupted).
INTERRUPTED = {
    "train": "interrupted before the run directory was written; nothing to resume, run the command again",
    "evaluate": "interrupted; no evaluation was written",
    "attack": "interrupted; no report was written (attack keeps no partial state: run the command again)",
    "certify": "interrupted; no certificate was written: run the command again",
    "benchmark": "interrupted; run the same `robustdml benchmark` command again to continue (finished runs and "
                 "evaluations are kept, an interrupted run resumes from its last checkpoint)",
    "report": "interrupted; the report may be incomplete: run the command again",
    "data": "interrupted; partial downloads were removed; run the command again",
}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _classify(error: BaseException):
    """(exit status, message line) for an exception that ended a command."""
    from robustdml.data.download import DownloadError
    from robustdml.engine.checkpoint import CheckpointError
    from robustdml.engine.config import ConfigError
    from robustdml.engine.failures import RunFailed, runtime_failure
    from robustdml.engine.run_dir import RunDirectoryError
    from robustdml.engine.trainer import TrainingDiverged
    from robustdml.registry import UnknownNameError

    if isinstance(error, (RunFailed, TrainingDiverged, DownloadError)):
        return 1, f"error: {_one_line(error)}"
    if isinstance(error, (ConfigError, UnknownNameError, RunDirectoryError, CheckpointError, FileNotFoundError,
                          ValueError)):
        return 2, f"error: {_one_line(error)}"
    failure = runtime_failure(error)
    if failure:
        return 1, f"error: {failure}: {_one_line(error)}"
    return 1, (f"internal error: {type(error).__name__}: {_one_line(error)} (a bug in robustdml: run the command "
               "again with --debug for the traceback and report it)")


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        from robustdml.console import configure

        configure(quiet=args.quiet, verbose=args.verbose, threads=args.threads)
        if hasattr(args, "faiss"):
            from robustdml.evaluation.faiss_backend import set_placement

            set_placement(args.faiss)
        return args.handler(args)
    except KeyboardInterrupt as interrupt:
        if debug:
            traceback.print_exc()
        print(getattr(interrupt, "message", None) or INTERRUPTED.get(args.command, "interrupted"), file=sys.stderr)
        return 130
    except Exception as error:  # every failure ends in one line; --debug adds the traceback
        if debug:
            traceback.print_exc()
        status, line = _classify(error)
        print(line, file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
