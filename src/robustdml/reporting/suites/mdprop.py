"""The mdprop suite: MDProp (Chen et al.) against natural and single-distribution adversarial training over
training fractions and training seeds, reported as a seed grid."""

from __future__ import annotations

from typing import Optional

from robustdml.reporting.seed_grid import GridPosition, grid_section
from robustdml.reporting.suites.base import SUITES, RunSpec, Suite, protocol_for

MDPROP_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
MDPROP_SEEDS = (0, 1, 2)
# Our readings of the paper where the reference code departs from it, as one named variant
# (src/robustdml/defenses/mdprop.py explains each).
MDPROP_OURS = {"targets": "nearest-other-class", "num_targets": 3, "eps_space": "pixel", "eps": 0.03, "steps": 3,
               "mix": "separate", "uax": True}
MDPROP_METHODS = (("natural", "natural", {}),
                  ("mdprop", "MDProp (reference)", {"defense": "mdprop"}),
                  ("mdprop-ours", "MDProp (our options)", {"defense": "mdprop", "defense_options": MDPROP_OURS}),
                  ("advprop-d", "AdvProp-D", {"defense": "advprop-d"}))
# CPU: the fractions are taken of a class-stratified 5% of the training set (300 of Fashion-MNIST's 6000 images
# per class); every run trains the same number of steps, so a smaller fraction means fewer distinct images.
MDPROP_CPU_POOL = 0.05
MDPROP_CPU_TRAINING = {"epochs": 2, "steps_per_epoch": 24, "batch_size": 64, "samples_per_class": 8,
                       "test_per_class": 100}
# --full: one epoch = one pass over all of Fashion-MNIST's 54,000 training images (after validation) in batches of 128.
MDPROP_FULL_TRAINING = {"epochs": 8, "steps_per_epoch": 421, "batch_size": 128, "samples_per_class": 16}
MDPROP_CPU_QUERIES = 50
FASHION_MNIST_TRAIN_PER_CLASS = 6000


def _training_images_per_class(train_fraction: float, val_fraction: float = 0.1) -> int:
    """Training images per class left by ``train_fraction`` of Fashion-MNIST once validation is carved out
    (the arithmetic of ``stratified_fraction`` and ``validation_split``)."""
    kept = max(1, int(round(FASHION_MNIST_TRAIN_PER_CLASS * train_fraction)))
    return kept - min(kept - 1, int(round(kept * val_fraction)))


@SUITES.register("mdprop")
def mdprop(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Natural, MDProp (reference), MDProp (our options) and AdvProp-D at training fractions 0.1, 0.25, 0.5 and 1,
    3 training seeds each: does MDProp raise clean R@1 where training data is scarce (Mao et al., ACML 2024)?"""
    if eta is not None:
        raise ValueError("--eta does not apply to the mdprop suite: each method keeps its own adversary "
                         "(MDProp's reference step, our options' 3 steps, AdvProp-D's 3 steps)")
    pool = 1.0 if full else MDPROP_CPU_POOL
    training = MDPROP_FULL_TRAINING if full else MDPROP_CPU_TRAINING
    runs, positions = [], {}
    for fraction in MDPROP_FRACTIONS:
        for seed in MDPROP_SEEDS:
            for name, label, options in MDPROP_METHODS:
                run = f"{name}-f{fraction:g}-s{seed}"
                config = {"dataset": "fashion-mnist", **training, "train_fraction": round(pool * fraction, 10),
                          "seed": seed, **options}
                runs.append(RunSpec(run, f"{label}, f={fraction:g}, seed {seed}", config))
                positions[run] = GridPosition(label, fraction, seed)
    images = {f: _training_images_per_class(round(pool * f, 10)) for f in MDPROP_FRACTIONS}
    steps = training["epochs"] * training["steps_per_epoch"]
    if full:
        protocol = protocol_for(True)
        setting = (f"Full setting (Fashion-MNIST-sized, not the paper's): fraction f of all of Fashion-MNIST's "
                   f"training set, the whole test set; every run trains {steps} steps ({training['epochs']} epochs of "
                   f"{training['steps_per_epoch']} batches of {training['batch_size']}, one epoch = one pass over "
                   "the whole training set), so smaller fractions see their images more often. Robustness: the "
                   "default evaluation (eps 0.01, 0.05, 0.1) on every test item, with its convergence probe.")
    else:
        protocol = protocol_for(False, eps=(0.01,), max_queries=MDPROP_CPU_QUERIES, probe_queries=0)
        setting = (f"CPU-sized setting: fraction f of a class-stratified {100 * MDPROP_CPU_POOL:g}% of Fashion-MNIST's "
                   f"training set (`train_fraction` = {MDPROP_CPU_POOL:g} f; 10% of it is carved out for "
                   f"validation), {training['test_per_class']} test images per class; every run trains the same "
                   f"{steps} steps ({training['epochs']} epochs of {training['steps_per_epoch']} batches of "
                   f"{training['batch_size']}, {training['samples_per_class']} per class), so a smaller fraction means "
                   "fewer distinct images, not less training. Robustness, cut to fit the budget: the default attack "
                   f"(its steps and restarts unchanged) at eps 0.01 only, on {MDPROP_CPU_QUERIES} random test queries "
                   "per run, without the convergence probe (the unbounded-attack check runs). Budget: about 30 "
                   "minutes on 2 CPU cores (the measured time is in the docs). Run with --full for all of Fashion-MNIST and the default "
                   "evaluation.")
    notes = [setting,
             "Training images per class (after validation) at f = " + ", ".join(f"{f:g}: {n}" for f, n in images.items())
             + f"; training seeds {list(MDPROP_SEEDS)} (a seed fixes the training subset, the initial weights and, "
             "in the CPU setting, the test items, so runs of the same seed are paired).",
             "Methods: MDProp (reference) = `--defense mdprop` with the reference code's defaults (one step of eps "
             "0.01 in normalised input space, STAX + MTAX with 5 targets, one batch through three BNs); MDProp (our "
             "options) = `--defense mdprop " + " ".join(f"--defense-option {k}={str(v).lower()}"
                                                       for k, v in MDPROP_OURS.items())
             + "` (our readings of the paper); AdvProp-D = `--defense advprop-d` (eps 0.03, 3 steps). All "
               "train the small convnet with the triplet loss of the other suites.",
             "The paper's setting: ResNet-50 on CUB-200-2011, CARS196 and SOP, multi-similarity loss, 125 epochs; "
             "it claims up to +2.95% clean R@1 and up to 2.12x robustness over the baseline, mainly where training "
             "data is scarce (half the training set). This suite is Fashion-MNIST-sized in both scales."]
    claim = ("**Published claim** (Mao et al., ACML 2024; ResNet-50 on CUB-200-2011 / CARS196 / SOP, 125 epochs): up "
             "to +2.95% clean R@1 and up to 2.12x robustness over the baseline, mainly where training data is scarce. "
             "Here: each method against natural training at each training fraction f, paired by training seed.")
    section = grid_section(positions, baseline="natural", setting_name="training fraction",
                           setting_notes={f: f"{n} training images per class" for f, n in images.items()},
                           heading="MDProp against natural training, over training seeds", claim=claim)
    featured = tuple(f"{name}-f{MDPROP_FRACTIONS[0]:g}-s{MDPROP_SEEDS[0]}" for name, _, _ in MDPROP_METHODS)
    return Suite("mdprop", " ".join(mdprop.__doc__.split()), runs, protocol, "full" if full else "cpu", notes, sections=section,
                 sections_first=True, featured=featured)
