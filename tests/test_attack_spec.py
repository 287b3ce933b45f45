"""AttackSpec: one object describes an evaluation; invalid settings fail before any work; its key changes with
everything that decides the result (a field, a member, an option, a revision) and with nothing else."""

import dataclasses

import pytest

from robustdml.attacks import members as M
from robustdml.robustness.spec import ERS_ATTACKS, AttackSpec, ers_spec, is_published_ers


def contributing_examples():
    """examples/contributing.py, the worked examples of CONTRIBUTING.md."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "contributing.py"
    spec = importlib.util.spec_from_file_location("contributing_examples", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_default_is_the_auto_ensemble_with_its_checks():
    spec = AttackSpec()
    assert spec.attacks == ("auto",) and [m.name for m in spec.members] == ["margin", "targeted", "nn"]
    assert spec.early_stop and spec.probe_queries > 0 and spec.sanity_checks and spec.random_start
    assert "auto" in spec.describe() and "early stop" in spec.describe() and "3 target classes" in spec.describe()


@pytest.mark.parametrize("values,fragment", [
    ({"attacks": ("bogus",)}, "unknown attack 'bogus'.*valid: auto, margin"), ({"attacks": ()}, "attacks is empty"),
    ({"attacks": ("nn", "nn")}, "twice"), ({"eps": (-0.1,)}, "eps"), ({"eps": (float("nan"),)}, "eps"),
    ({"engine": "bim"}, "engine must be one of .*got 'bim'"), ({"norm": "l1"}, "norm"), ({"steps": 0}, "steps"),
    ({"restarts": 0}, "restarts"), ({"max_queries": 0}, "max_queries"), ({"probe_queries": -1}, "probe_queries"),
    ({"escalations": -1}, "escalations"), ({"escalations": 1.5}, "escalations"), ({"step_size": -1.0}, "step_size"),
    ({"early_stop": "yes"}, "early_stop"), ({"steps": True}, "steps"),
    ({"options": {"targeted": {"targets": 0}}}, "targeted: option targets must be an integer >= 1"),
    ({"attacks": ("gtt",), "options": {"gtt": {"k": 0}}}, "gtt: option k"),
    ({"attacks": ("gtm",), "options": {"gtm": {"target": "random"}}}, "target must be one of nearest, reference"),
    ({"options": {"targeted": {"targetz": 2}}}, "targeted has no option.*targetz.*its options: candidates"),
    ({"options": {"gtt": {"k": 3}}}, "options given for gtt, which this spec does not run")])
def test_invalid_settings_name_the_field(values, fragment):
    with pytest.raises(ValueError, match=fragment):
        AttackSpec(**values)


def test_the_key_changes_with_every_field_and_round_trips():
    base = AttackSpec()
    changes = {"attacks": ("auto", "es"), "eps": (0.01,), "engine": "pgd", "steps": 7, "step_size": 0.01, "norm": "l2",
               "random_start": False, "restarts": 2, "early_stop": False, "max_queries": 10, "probe_queries": 5,
               "escalations": 1, "sanity_checks": False, "ers": ers_spec(28),
               "options": {"targeted": {"targets": 2, "candidates": 3}}}
    assert set(changes) == {f.name for f in dataclasses.fields(AttackSpec)}, "a field is missing from this test"
    keys = {base.key()}
    for field, value in changes.items():
        keys.add(dataclasses.replace(base, **{field: value}).key())
    assert len(keys) == len(changes) + 1
    full = dataclasses.replace(base, **changes)
    assert AttackSpec.from_dict(full.to_dict()) == full
    assert AttackSpec.from_dict(full.to_dict()).key() == full.key()
    with pytest.raises(ValueError, match="unknown attack-spec field.*stepz"):
        AttackSpec.from_dict({"stepz": 3})


def test_every_option_of_every_unit_run_changes_the_key_and_a_default_option_does_not():
    spec = AttackSpec(attacks=("auto", "gtt", "gtm", "qa+", "ca-"))
    options = {"margin": {"candidates": 8}, "targeted": {"targets": 2}, "gtt": {"k": 3},
               "gtm": {"target": "reference"}, "qa+": {"candidates": 2}, "ca-": {"queries": 2}}
    keys = {spec.key()} | {dataclasses.replace(spec, options={u: v}).key() for u, v in options.items()}
    assert len(keys) == len(options) + 1
    assert dataclasses.replace(spec, options={"gtt": {"k": 4}}).key() == spec.key()  # 4 is GTT's default


def test_the_key_does_not_depend_on_batch_size_or_progress(natural_fmnist):
    """Batch size and progress are arguments of the evaluation, not of the spec: the same spec (and key)
    gives the same robust R@1 with either."""
    from robustdml.robustness.evaluate import evaluate_robustness

    model, test = natural_fmnist
    spec = AttackSpec(attacks=("nn",), eps=(0.05,), steps=3, max_queries=30, probe_queries=0, sanity_checks=False)
    small = evaluate_robustness(model, test, spec, batch_size=7, progress=False)
    large = evaluate_robustness(model, test, spec, batch_size=256, progress=True)
    assert small.settings.spec_key == large.settings.spec_key == spec.key()
    assert small.worst_case[0.05].correct == large.worst_case[0.05].correct


def test_a_new_member_of_auto_changes_the_key_of_auto_and_only_of_the_specs_that_run_it(monkeypatch):
    """The worked example of CONTRIBUTING.md: a member is one class registered in MEMBERS; joining ``auto``
    is one entry in AUTO, and every stored ``auto`` result is then computed again (its key changes)."""
    PushFromSecondNearest = contributing_examples().PushFromSecondNearest

    auto, nn = AttackSpec(), AttackSpec(attacks=("nn",))
    before = auto.key(), nn.key()
    M.MEMBERS.add(PushFromSecondNearest.name, PushFromSecondNearest)
    try:
        monkeypatch.setattr(M, "AUTO", M.AUTO + (PushFromSecondNearest,))
        assert "second" in [m.name for m in AttackSpec().members]
        assert AttackSpec().key() != before[0] and AttackSpec(attacks=("nn",)).key() == before[1]
    finally:
        M.MEMBERS.remove(PushFromSecondNearest.name)


def test_a_revised_attack_changes_the_key_of_every_spec_that_runs_it(monkeypatch):
    from robustdml.attacks.retrieval import RETRIEVAL_ATTACKS
    from robustdml.robustness import spec as S

    specs = {"qa-": AttackSpec(attacks=("qa-",)), "ers": AttackSpec(ers=ers_spec(28)),
             "nn": AttackSpec(attacks=("nn",)), "auto": AttackSpec()}
    before = {name: spec.key() for name, spec in specs.items()}
    monkeypatch.setattr(RETRIEVAL_ATTACKS.get("qa-"), "revision", 3)
    monkeypatch.setattr(M.MEMBERS.get("nn"), "revision", 2)
    after = {name: spec.key() for name, spec in specs.items()}
    assert after["qa-"] != before["qa-"] and after["ers"] != before["ers"]
    assert after["nn"] != before["nn"] and after["auto"] != before["auto"]
    monkeypatch.setattr(S, "ERS_RESULT_REVISION", S.ERS_RESULT_REVISION + 1)
    again = {name: spec.key() for name, spec in specs.items()}
    assert again["ers"] != after["ers"] and all(again[name] == after[name] for name in ("qa-", "nn", "auto"))


def test_the_stronger_spec_is_one_more_restart_with_twice_the_steps():
    spec = AttackSpec(steps=10, restarts=2)
    assert (spec.stronger().steps, spec.stronger().restarts, spec.stronger().probe_queries) == (20, 1, 0)
    assert AttackSpec(step_size=0.02).stronger().step_size == pytest.approx(0.01)
    # escalation k doubles k times and never escalates or probes itself
    assert (spec.stronger(2).steps, spec.stronger(2).escalations) == (40, 0)
    assert AttackSpec(step_size=0.02).stronger(2).step_size == pytest.approx(0.005)
    assert spec.escalations == 2 and AttackSpec().escalations >= 1


def test_the_ers_profile_follows_the_published_code_and_the_input_size():
    small, large = ers_spec(28), ers_spec(224)
    assert small.attacks == ERS_ATTACKS and small.engine == "pgd" and small.steps == 32
    assert small.step_size == pytest.approx(3 / 255) and large.step_size == pytest.approx(3 / 255)
    assert small.eps == pytest.approx((77 / 255,)) and large.eps == pytest.approx((8 / 255,))
    assert not small.random_start and not small.early_stop
    assert ers_spec(28, steps=8).steps == 8 and ers_spec(28, steps=8) != small
    assert ers_spec(224, eps=None) == large  # None = keep the published value
    with pytest.raises(ValueError, match="unknown ERS profile override 'stepz'"):
        ers_spec(28, stepz=3)


def test_the_gtm_target_is_named_in_the_description_and_keeps_the_profile_published():
    reference = ers_spec(28, options={"gtm": {"target": "reference"}})
    assert reference.to_dict()["options"] == {"gtm": {"target": "reference"}}
    assert AttackSpec.from_dict(reference.to_dict()) == reference
    assert "GTM towards the reference target" in reference.describe() and "GTM" not in ers_spec(28).describe()
    # the same published profile, read with the reference's GTM target; other changes are not published
    assert is_published_ers(reference, 28) and is_published_ers(ers_spec(28), 28)
    assert not is_published_ers(ers_spec(28, steps=8, options={"gtm": {"target": "reference"}}), 28)


def test_a_spec_stored_by_the_previous_release_is_read_with_its_flat_option_fields():
    old = {**AttackSpec(attacks=("auto", "gtm")).to_dict(), "targets": 2, "candidates": 16, "qa_candidates": 1,
           "ca_queries": 1, "gtt_k": 4, "gtm_target": "reference"}
    spec = AttackSpec.from_dict(old)
    assert spec.option_values() == {"targeted": {"targets": 2}, "gtm": {"target": "reference"}}
