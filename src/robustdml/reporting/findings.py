"""The top of a report: key findings generated from the numbers, and how to read them.

Claims are only as strong as the data. Runs attacked on the same queries are compared query by
query (:mod:`robustdml.reporting.comparisons`): each defense against natural training, and a run is
"the most robust" at an eps only when its paired difference to every other run is significant
(exact McNemar, Holm-adjusted over the comparisons shown). Results saved without per-query outcomes
fall back to marginal intervals: a leader only when its 95% interval does not overlap the
runner-up's. Every finding states its basis (queries, seeds, attack), and a failed check
(unconverged attack, masked gradients, ...) is shown before anything else.
"""

from __future__ import annotations

from typing import List, Optional

from robustdml.reporting.comparisons import Family, baseline_run, ranked, wanted_comparisons
from robustdml.robustness.checks import NEAR_ZERO_R1
from robustdml.reporting.blocks import Box, Bullets, Heading, Paragraph
from robustdml.reporting.model import RunSummary, counts_text, seeds_text
from robustdml.robustness.spec import AttackProtocol


def robust_finding(runs: List[RunSummary], eps: float) -> Optional[str]:
    """One sentence on robust R@1 at ``eps``: a clear leader (with its benign-R@1 cost) or a tie."""
    ranked = sorted(((run, run.robust_r1(eps)) for run in runs if run.robust_r1(eps)), key=lambda p: -p[1].value)
    if not ranked:
        return None
    (leader, top), rest = ranked[0], ranked[1:]
    if not rest:
        return f"eps {eps:g}: robust R@1 of **{leader.label}** {top.text()}."
    tied = [(run, e) for run, e in rest if e.overlaps(top)]
    if len(tied) == len(rest):
        return (f"eps {eps:g}: **no clear leader**: all {len(ranked)} runs are statistically tied (their 95% intervals "
                f"overlap that of the highest, {leader.label} {top.text()}).")
    if tied:
        names = ", ".join(f"{run.label} {e.number}" for run, e in tied)
        return (f"eps {eps:g}: **no clear leader**: the highest, {leader.label} {top.text()}, is statistically tied "
                f"with {names} (95% intervals overlap).")
    runner, second = rest[0]
    return (f"eps {eps:g}: **{leader.label}** is the most robust, {top.text()} against {second.text()} for the "
            f"runner-up {runner.label} (95% intervals do not overlap); {_benign_cost(runs, leader)}.")


def baseline_finding(runs: List[RunSummary], eps: float, family: Family) -> Optional[str]:
    """One sentence on whether each defense beats natural training at ``eps``, paired by query."""
    baseline = baseline_run(runs)
    parts = []
    for run in ranked(runs, eps):
        judged = None if run is baseline else family.get(eps, run, baseline)
        if judged:
            verdict = ("**beats** it" if judged.significant and judged.comparison.difference > 0 else
                       "is **worse**" if judged.significant else "not distinguishable")
            parts.append(f"**{run.label}** {run.robust_r1(eps).number}%, {verdict}: {judged.text()}")
    if not parts:
        return None
    return (f"eps {eps:g}, against natural training ({baseline.label} {baseline.robust_r1(eps).number}%; paired on "
            f"the same queries): " + "; ".join(parts) + ".")


def paired_leader_finding(runs: List[RunSummary], eps: float, family: Family) -> Optional[str]:
    """A clear leader at ``eps`` when its paired difference to every other run is significant."""
    order = ranked(runs, eps)
    judged = [family.get(eps, order[0], run) for run in order[1:]] if order else []
    if not judged or not all(judged):
        return None
    leader, top = order[0], order[0].robust_r1(eps)
    tied = [j for j in judged if not (j.significant and j.comparison.difference > 0)]
    if not tied:
        return (f"eps {eps:g}: **{leader.label}** is the most robust, {top.text()}; ahead of the runner-up "
                f"{judged[0].b.label} by {judged[0].text()}; {_benign_cost(runs, leader)}.")
    names = "; ".join(f"{j.b.label} {j.b.robust_r1(eps).number}% ({j.text()})" for j in tied)
    return (f"eps {eps:g}: **no clear leader**: the highest, {leader.label} {top.text()}, is not distinguishable "
            f"(paired on the same queries) from {names}.")


def _benign_cost(runs: List[RunSummary], leader: RunSummary) -> str:
    best = max(runs, key=lambda run: run.benign("R@1"))
    mine, theirs = 100 * leader.benign("R@1"), 100 * best.benign("R@1")
    if best is leader or mine >= theirs:
        return f"it also has the highest benign R@1 ({mine:.1f})"
    return f"it gives up {theirs - mine:.1f} points of benign R@1 ({mine:.1f} against {theirs:.1f} for {best.label})"


def ers_finding(runs: List[RunSummary]) -> Optional[str]:
    scored = sorted((run for run in runs if run.ers is not None), key=lambda run: -run.ers)
    if not scored:
        return None
    others = "; ".join(f"{run.label} {run.ers_text()}" for run in scored[1:3])
    lowest = f"; lowest: {scored[-1].label} {scored[-1].ers_text()}" if len(scored) > 3 else ""
    profile = scored[0].ers_results[0]
    unpublished = "" if profile.published else "; **not** the published ERS profile"
    return (f"Highest ERS: **{scored[0].label} {scored[0].ers_text()}** of 100"
            + (f" (next: {others}{lowest})" if others else "") + _ers_leader(scored) + f"{unpublished}.")


def _ers_leader(scored: List[RunSummary]) -> str:
    """Whether the highest ERS is clear of the runner-up (95% intervals over the queries apart)."""
    if len(scored) < 2:
        return ""
    leader, runner = scored[0].ers_interval, scored[1].ers_interval
    if leader is None or runner is None:
        return "; some ERS have no interval (results saved before ERS had one), so no leader is judged"
    if leader[0] > runner[1]:
        return "; its 95% interval over the queries lies above the runner-up's"
    return "; its 95% interval over the queries overlaps the runner-up's: **no clear ERS leader**"


def problems(run: RunSummary) -> List[str]:
    """Short phrases for the checks that failed on ``run``."""
    found, accounted = [], 0
    unconverged = run.not_converged()
    if unconverged:
        found.append("attack not converged at eps " + ", ".join(f"{eps:g}" for eps in unconverged))
        accounted += sum(len(result.not_converged()) for result in run.robustness)
    masked = [r.settings.unbounded_r1 for r in run.robustness if (r.settings.unbounded_r1 or 0) > NEAR_ZERO_R1]
    if masked:
        found.append(f"masked gradients suspected (an unbounded attack leaves R@1 at {100 * max(masked):.1f}%)")
        accounted += len(masked)
    if len(run.warnings) > accounted:
        found.append(f"{len(run.warnings) - accounted} other failed check(s)")
    return found


def warning_box(runs: List[RunSummary]) -> Optional[Paragraph]:
    flagged = [(run, problems(run)) for run in runs]
    flagged = [(run, found) for run, found in flagged if found]
    if not flagged:
        return None
    return Paragraph(f"**Checks failed for {len(flagged)} of {len(runs)} run(s): their robust R@1 may be "
                     "overstated.** " + "; ".join(f"{run.label}: {', '.join(found)}" for run, found in flagged)
                     + ". Details: [Checks](#checks).", "warning")


def key_findings(runs: List[RunSummary], protocol: AttackProtocol) -> Box:
    family = Family(wanted_comparisons(runs, protocol.eps_list))
    if family.complete and len(family):
        findings = ([baseline_finding(runs, eps, family) for eps in protocol.eps_list]
                    + [paired_leader_finding(runs, eps, family) for eps in protocol.eps_list] + [ers_finding(runs)])
        paired_basis = (f" Comparisons: paired on the same queries, difference in points with Newcombe's 95% interval "
                        f"and the exact McNemar p-value, Holm-adjusted over the {len(family)} comparisons shown "
                        f"(significant: adjusted p < 0.05).")
    else:
        findings = [robust_finding(runs, eps) for eps in protocol.eps_list] + [ers_finding(runs)]
        paired_basis = (" Comparisons: marginal intervals (these results were saved without per-query "
                        "outcomes, so no paired test)." if len(runs) > 1 else "")
    basis = (f"Basis: {counts_text(runs, 'queries')} attacked test queries per run (of "
             f"{counts_text(runs, 'test_items')} test items), {seeds_text(protocol)}; attack "
             f"`{protocol.spec.describe()}`; robust R@1 is the per-query worst case over its members. Intervals: "
             "95% Clopper-Pearson over the attacked queries." + paired_basis
             + ("" if protocol.spec.probe_queries else " No convergence check was run."))
    blocks = [Heading("Key findings")]
    warning = warning_box(runs)
    if warning:
        blocks.append(warning)
    blocks += [Bullets([f for f in findings if f]), Paragraph(basis, "small")]
    return Box(blocks, anchor="key-findings")


# What each ERS term measures (robustdml.attacks.retrieval has the exact definitions).
ERS_TERMS = {"CA+": "a random gallery item moved to the top of a query's ranking",
             "CA-": "an item of a query's top 1% moved to the end of its ranking",
             "QA+": "a query moved so that a random item ranks first",
             "QA-": "a query moved so that an item of its top 1% ranks last",
             "TMA": "a query's embedding pulled towards a random item", "ES:D": "how far the embedding moves",
             "ES:R": "R@1 after that shift", "LTM": "R@1 after moving every negative before the nearest positive",
             "GTM": "R@1 after pulling the query towards the nearest item of another class",
             "GTT": "share of queries whose top-1 stays in the top-4 when pushed to the end"}


def how_to_read(runs: List[RunSummary], protocol: AttackProtocol) -> Paragraph:
    queries = counts_text(runs, "queries")
    text = ("**How to read this.** *Benign R@1*: the share of test items whose nearest neighbour (itself excluded) "
            f"has their class, over the whole test split. *Robust R@1*: the same for {queries} attacked queries, each "
            "perturbed within an L-infinity ball of radius eps (pixel units) by every attack of the ensemble, and "
            "counted correct only if it survives all of them (per-query worst case; perturbed query against the "
            "clean gallery). *clean* is those queries' R@1 before the attack. *[low, high]*: the 95% Clopper-Pearson "
            f"interval over the {queries} queries: runs whose intervals overlap are not distinguishable at this "
            "sample size.")
    if any(run.ers is not None for run in runs):
        terms = "; ".join(f"{name}: {meaning}" for name, meaning in ERS_TERMS.items())
        text += (" *ERS* (empirical robustness score, Zhou & Patel, CVPR 2022): 0-100, **higher = more robust**; "
                 "the mean of ten attacks' results, each normalised to 0 (the attack fully succeeds) to 100 "
                 f"(nothing changed): {terms}.")
    return Paragraph(text, "small")
