"""``robustdml`` command line: train | evaluate | attack | benchmark | report | data.

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
    ("--train-fraction", "train_fraction", float, "class-stratified fraction of training data (data-scarce setting)"),
    ("--val-fraction", "val_fraction", float, "validation split carved from training data (default 0.1)"),
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
    ("--lr", "lr", float, "Adam learning rate"),
    ("--weight-decay", "weight_decay", float, "Adam weight decay"),
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
    ("--eps", "eps", float, "attack radius in pixel units (e.g. 0.01, 8/255=0.0314)"),
    ("--attack-steps", "steps", int, "PGD iterations eta of the training adversary"),
    ("--step-size", "step_size", float, "PGD step size"),
    ("--attack-rate", "attack_rate", float, "probability that a tuple is perturbed (robust-pair/triplet)"),
]


def _add_train_parser(sub) -> None:
    parser = sub.add_parser("train", help="train an embedding model (naturally or with a defense)")
    parser.add_argument("--config", help="YAML file of TrainConfig fields")
    for flag, dest, kind, help_text in TRAIN_FLAGS + DEFENSE_FLAGS:
        parser.add_argument(flag, dest=f"opt_{dest}", type=kind, default=None, help=help_text)
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


def _float(text: str) -> float:
    """``0.05`` or ``8/255`` -> float (fractions allowed, as eps are quoted in papers)."""
    text = text.strip()
    try:
        numerator, _, denominator = text.partition("/")
        return float(numerator) / float(denominator) if denominator else float(numerator)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _float_list(text: str) -> List[float]:
    """``0.01,0.05,8/255`` -> floats."""
    return [_float(part) for part in text.split(",")]


def _add_spec_flags(parser, max_queries: int) -> None:
    """The flags of an attack specification (robustdml.robustness.spec.AttackSpec), shared by attack and report."""
    from robustdml.robustness import spec as S

    parser.add_argument("--attacks", default=S.AUTO,
                        help=f"comma-separated (default {S.AUTO}: the ensemble {', '.join(S.AUTO_MEMBERS)} with early "
                             f"stop); any of: {', '.join(S.attack_names())}")
    parser.add_argument("--eps", type=_float_list, default=list(S.DEFAULT_EPS), help="comma-separated eps list (8/255 ok)")
    parser.add_argument("--engine", default="apgd", help="pgd | fgsm | apgd | cw (default apgd)")
    parser.add_argument("--steps", type=int, default=S.AUTO_STEPS, help=f"gradient steps per run (default {S.AUTO_STEPS})")
    parser.add_argument("--step-size", type=_float, default=None, help="default: the engine's (APGD: 2 eps, adaptive)")
    parser.add_argument("--norm", default="linf", choices=["linf", "l2"])
    parser.add_argument("--restarts", type=int, default=S.AUTO_RESTARTS,
                        help=f"random restarts of each ensemble member (default {S.AUTO_RESTARTS})")
    parser.add_argument("--targets", type=int, default=S.AUTO_TARGETS,
                        help=f"other classes the targeted member aims at (default {S.AUTO_TARGETS})")
    parser.add_argument("--candidates", type=int, default=S.MARGIN_CANDIDATES,
                        help=f"nearest positives/negatives in the margin objectives (default {S.MARGIN_CANDIDATES})")
    parser.add_argument("--no-random-start", action="store_true", help="start at the clean image")
    parser.add_argument("--no-early-stop", action="store_true", help="keep attacking queries already misranked "
                                                                     "(same robust R@1, more cost)")
    parser.add_argument("--qa-candidates", type=int, default=1, help="m: candidates per query in QA+/QA-")
    parser.add_argument("--ca-queries", type=int, default=1, help="w: queries per candidate in CA+/CA-")
    parser.add_argument("--gtt-k", type=int, default=4, help="GTT moves the top-1 out of the top-k")
    parser.add_argument("--gtm-target", choices=S.GTM_TARGETS, default="nearest",
                        help="GTM pulls the query towards the nearest item of another class (default), or towards "
                             "the item RobRank's code picks (effectively random; what published ERS tables used)")
    parser.add_argument("--max-queries", type=int, default=max_queries,
                        help=f"random test queries attacked (0 = all; default {max_queries}); a CPU budget cuts "
                             "queries, never steps")
    parser.add_argument("--probe-queries", type=int, default=S.PROBE_QUERIES,
                        help=f"queries re-attacked with 2x steps and one more restart to check convergence "
                             f"(default {S.PROBE_QUERIES}; 0 = no check)")
    parser.add_argument("--escalations", type=int, default=S.AUTO_ESCALATIONS,
                        help="when the convergence check fails at an eps, re-attack every surviving query with its "
                             f"stronger attack and check again, at most this many times (default "
                             f"{S.AUTO_ESCALATIONS}; 0 = only warn)")
    parser.add_argument("--no-sanity-checks", action="store_true", help="skip the eps-monotonicity and unbounded checks")
    parser.add_argument("--ers", action="store_true", help="also run the published ERS profile (PGD 32 x 3/255 from "
                                                           "the clean image at 8/255 or 77/255)")
    parser.add_argument("--ers-steps", type=int, help="override the ERS profile's steps (no longer the published ERS)")
    parser.add_argument("--ers-eps", type=_float, help="override the ERS profile's eps (no longer the published ERS)")


def _spec_from_args(args, image_size: int):
    from robustdml.robustness.spec import AttackSpec, ers_spec

    ers = ers_spec(image_size, steps=args.ers_steps, eps=args.ers_eps, gtm_target=args.gtm_target) if args.ers else None
    return AttackSpec(attacks=tuple(a.strip() for a in args.attacks.split(",") if a.strip()), eps=tuple(args.eps),
                      engine=args.engine, steps=args.steps, step_size=args.step_size, norm=args.norm,
                      random_start=not args.no_random_start, restarts=args.restarts, targets=args.targets,
                      candidates=args.candidates, early_stop=not args.no_early_stop,
                      qa_candidates=args.qa_candidates, ca_queries=args.ca_queries, gtt_k=args.gtt_k,
                      gtm_target=args.gtm_target, max_queries=args.max_queries or None,
                      probe_queries=args.probe_queries,
                      escalations=args.escalations, sanity_checks=not args.no_sanity_checks, ers=ers)


def _input_size(run_dir) -> int:
    """The side of the run's input images (28 for the 28px sets), for the ERS profile."""
    from robustdml.engine.config import TrainConfig
    from robustdml.engine.run_dir import RunDirectory

    config = TrainConfig.load(RunDirectory.open(run_dir).config_path, run_directory=True).resolved()
    return config.image_size or 28  # image benchmarks set their crop size; the 28px sets have none


def _add_attack_parser(sub) -> None:
    parser = sub.add_parser("attack", help="robustness of a trained run: attacks x eps, worst case, checks, ERS")
    parser.add_argument("run_dir")
    _add_spec_flags(parser, max_queries=1000)
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bn", default="clean", help="batch norm of multi-BN models (MDProp: clean|stax|mtax)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the query sample and random starts")
    parser.add_argument("--output", help="also copy the report into this folder (default: RUN_DIR/robustness/<key>)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=_cmd_attack)


def _cmd_attack(args) -> int:
    import shutil

    from robustdml.robustness.store import robustness_folder, robustness_for
    from robustdml.robustness.spec import AttackProtocol

    spec = _spec_from_args(args, _input_size(args.run_dir))
    protocol = AttackProtocol(spec=spec, seeds=(args.seed,))
    folder = robustness_folder(Path(args.run_dir), protocol, args.seed, args.checkpoint, args.bn)
    if (folder / "robustness.json").is_file():
        print(f"reusing the result of the same attack spec, checkpoint, BN and seed in {folder}")
    robustness_for(Path(args.run_dir), protocol, args.seed, device=args.device, progress=not args.no_progress,
                   checkpoint=args.checkpoint, bn=args.bn)
    if args.output:
        shutil.copytree(folder, args.output, dirs_exist_ok=True)
    print((folder / "robustness.md").read_text())
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
    suite = build_suite(args.suite, full=args.full, eta=args.eta)
    if args.runs:
        suite = select_runs(suite, args.runs.split(","))
    overrides = {"epochs": args.epochs} if args.epochs else {}
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
    _add_spec_flags(parser, max_queries=300)
    parser.add_argument("--seeds", type=int, default=1, help="number of attack seeds (mean ± std)")
    parser.add_argument("--device", default="auto")
    parser.set_defaults(handler=_cmd_report)


def _cmd_report(args) -> int:
    from robustdml.reporting.report import build_report
    from robustdml.robustness.spec import AttackProtocol

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    protocol = AttackProtocol(spec=_spec_from_args(args, _input_size(args.run_dirs[0])), seeds=tuple(range(args.seeds)))
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
