"""``robustdml certify RUN``: its flags and what it runs."""

from __future__ import annotations

from robustdml.options import number, number_list, whole_number


def add_certify_parser(sub) -> None:
    parser = sub.add_parser("certify", help="randomized smoothing: certified and attacked R@1 / mAP@R of the smoothed "
                                            "model per l2 radius")
    parser.add_argument("run_dir")
    parser.add_argument("--sigma", type=number, default=0.25, help="noise std in pixel units (train with "
                                                                    "--defense gaussian-augment at the same sigma)")
    parser.add_argument("--radii", type=number_list, default=[0.0, 0.25, 0.5, 1.0], help="l2 radii, pixel units")
    parser.add_argument("--samples", type=whole_number, default=1000,
                        help="noise draws per query (for the certificate and for judging an attack)")
    parser.add_argument("--confidence", type=number, default=0.999, help="probability that the whole table holds")
    parser.add_argument("--gallery-samples", type=whole_number, default=32, help="noise draws per stored gallery vector")
    parser.add_argument("--max-queries", type=whole_number, default=200, help="random test queries (0 = all)")
    parser.add_argument("--attack-steps", type=whole_number, default=50,
                        help="APGD l2 steps of the attack on the smoothed model")
    parser.add_argument("--eot-samples", type=whole_number, default=8, help="noise draws averaged per attack step")
    parser.add_argument("--seed", type=whole_number, default=0, help="seed of the queries and noise draws")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run_certify_command)


def run_certify_command(args) -> int:
    from robustdml.certify.attack import AttackSettings
    from robustdml.certify.evaluate import CertifySettings, certify_run

    settings = CertifySettings(sigma=args.sigma, radii=tuple(args.radii), samples=args.samples,
                               confidence=args.confidence, gallery_samples=args.gallery_samples,
                               max_queries=args.max_queries or None, seed=args.seed,
                               attack=AttackSettings(steps=args.attack_steps, eot_samples=args.eot_samples))
    folder, report = certify_run(args.run_dir, settings, checkpoint=args.checkpoint, device=args.device,
                                 progress=not args.no_progress)
    print(report.to_markdown())
    print(f"report written to {folder}")
    return 0
