"""The defenses suite: every adversarial training defense on one budget."""

from __future__ import annotations

from typing import Optional

from robustdml.reporting.suites.base import SUITES, RunSpec, Suite, base_config, cpu_note, protocol_for


@SUITES.register("defenses")
def defenses(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Natural, robust triplet, EST, ACT, HM variants and MDProp side by side (Zhou & Patel, CVPR 2022 table).

    The adversaries take eta = 8 steps at both scales: the CVPR paper's equal-cost setting, and with
    RobRank's fixed step of 3/255 from the clean image the reach (24/255) covers the evaluated eps.
    """
    steps = eta or 8
    adversarial = {"steps": steps}
    runs = [
        RunSpec("natural", "natural", {**base_config(full), "loss": "triplet"}),
        RunSpec("robust-triplet", "robust triplet (Panum)", {**base_config(full), "defense": "robust-triplet",
                                                             "defense_options": dict(adversarial)}),
        RunSpec("est", "EST", {**base_config(full), "defense": "est", "defense_options": dict(adversarial)}),
        RunSpec("act", "ACT", {**base_config(full), "defense": "act", "defense_options": dict(adversarial)}),
        RunSpec("hm", "HM (softhard)", {**base_config(full), "defense": "hm", "defense_options": dict(adversarial)}),
        RunSpec("hm-lga-ics", "HM + LGA + ICS", {**base_config(full), "defense": "hm",
                                                 "defense_options": {**adversarial, "lga": True, "ics": True}}),
        RunSpec("mdprop", "MDProp", {**base_config(full), "defense": "mdprop"}),
    ]
    protocol = protocol_for(full, ers=True)
    notes = cpu_note(full) + [f"Adversarial training with eta = {steps} PGD steps at eps = 77/255 for EST, ACT "
                               f"and HM; robust triplet: eta = {steps} steps at its own eps 0.1; MDProp: the "
                               "reference's one step of eps 0.01 in normalised input space (each run's exact options: "
                               "Setting and configuration).",
                               "ERS uses the published 28px profile (PGD, 32 steps of 3/255 from the clean image, "
                               "eps 77/255) on the same queries."]
    return Suite("defenses", defenses.__doc__, runs, protocol, "full" if full else "cpu", notes)


# RobRank's recipe for Fashion-MNIST (robrank/configs/configs_rank.py ``rc2f2`` with the loss ``ptripletN``):
# the rc2f2 model (512-d embedding), batches of 128 SPC-2 pairs (256 images), the spc2-random miner, the
# triplet loss with margin 0.2 averaged over all triplets, Adam lr 1e-3 with weight decay 1e-7, 8 epochs
# (maxepoch 16 // 2 for pair losses), on every training image, keeping the last checkpoint (no validation split).
