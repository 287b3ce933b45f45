"""``robustdml attack`` and ``robustdml report``: the attack-spec flags (from the spec's metadata) and what they run."""

from __future__ import annotations

from pathlib import Path


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


def add_attack_parser(sub) -> None:
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


def add_report_parser(sub) -> None:
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
