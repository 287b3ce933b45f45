"""robustdml: adversarially robust deep metric learning, and honest robustness evaluation.

The package in layers; a layer imports only from the layers below it (``tests/test_structure.py`` checks it):

    cli          the command line: parses flags, calls one function per command
    reporting    reports of run directories: read model (model.py), tables, figures, the page, suites/
    robustness   the attack spec, the evaluation (state, checks, ERS), the typed result and its store
    engine       training and run directories: config, trainer, checkpoints, loading a run
    defenses     adversarial training methods (robust tuples, EST/ACT/HM, MDProp), one registry
    attacks      units: engines (PGD, APGD, C&W...), objectives, retrieval attacks, ensemble members
    evaluation   retrieval metrics (R@k, mAP@R, NMI), kNN, intervals, ERS arithmetic
    losses       metric losses and miners (pytorch-metric-learning), triplet sampling
    models       embedding networks and multi-BN
    data         datasets, their registry entries (facts, download), samplers
    shared       registry.py, options.py (numbers such as 8/255), files.py (safe writes), version.py

Each registry (datasets, models, losses, attack engines, retrieval attacks, ensemble members, defenses,
suites) is filled by its modules; adding one of each is one new file plus one registry line
(CONTRIBUTING.md shows how).
"""

from robustdml.version import __version__  # noqa: F401
