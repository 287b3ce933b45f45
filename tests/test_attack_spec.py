"""AttackSpec: one object describes an evaluation; invalid settings fail before any work; its key
changes with every field, so a cached result is never reused for another attack."""

import dataclasses

import pytest

from robustdml.robustness.spec import AUTO_MEMBERS, ERS_ATTACKS, AttackSpec, ers_spec, is_published_ers


def test_the_default_is_the_auto_ensemble_with_its_checks():
    spec = AttackSpec()
    assert spec.attacks == ("auto",) and spec.members == AUTO_MEMBERS
    assert spec.early_stop and spec.probe_queries > 0 and spec.sanity_checks and spec.random_start
    assert "auto" in spec.describe() and "early stop" in spec.describe()


@pytest.mark.parametrize("field,value,fragment", [
    ("attacks", ("bogus",), "unknown attack 'bogus'.*valid: auto, margin"), ("attacks", (), "attacks is empty"),
    ("attacks", ("nn", "nn"), "twice"), ("eps", (-0.1,), "eps"), ("eps", (float("nan"),), "eps"),
    ("engine", "bim", "engine 'bim'"), ("norm", "l1", "norm"), ("steps", 0, "steps"), ("restarts", 0, "restarts"),
    ("targets", 0, "targets"), ("gtt_k", 0, "gtt_k"), ("max_queries", 0, "max_queries"),
    ("probe_queries", -1, "probe_queries"), ("escalations", -1, "escalations"), ("escalations", 1.5, "escalations"),
    ("step_size", -1.0, "step_size"), ("early_stop", "yes", "early_stop"),
    ("steps", True, "steps"), ("gtm_target", "random", "gtm_target must be one of nearest, reference")])
def test_invalid_settings_name_the_field(field, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        AttackSpec(**{field: value})


def test_the_key_changes_with_every_field_and_round_trips():
    base = AttackSpec()
    changes = {"attacks": ("nn",), "eps": (0.01,), "engine": "pgd", "steps": 7, "step_size": 0.01, "norm": "l2",
               "random_start": False, "restarts": 2, "targets": 2, "candidates": 3, "early_stop": False,
               "qa_candidates": 2, "ca_queries": 2, "gtt_k": 3, "max_queries": 10, "probe_queries": 5, "escalations": 1,
               "sanity_checks": False, "ers": ers_spec(28), "gtm_target": "reference"}
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


def test_gtm_target_is_named_in_the_description_and_keeps_older_cache_keys():
    # gtm_target came after results were cached: at its default it stays out of the key, which is
    # therefore the one those results were saved under (values computed before the field existed)
    assert AttackSpec().key() == "5fa65df01e2a" and "gtm_target" not in AttackSpec().to_dict()
    # ERS results of revision 1 of the ranking attacks (key 35602d2aaa7f), and those without an
    # interval (key b402139a71db), are not reused
    assert AttackSpec(ers=ers_spec(28), max_queries=200).key() == "18b6636a808f"
    reference = ers_spec(28, gtm_target="reference")
    assert reference.to_dict()["gtm_target"] == "reference" and AttackSpec.from_dict(reference.to_dict()) == reference
    assert "GTM towards the reference target" in reference.describe()
    assert "GTM" not in ers_spec(28).describe() and "GTM" not in AttackSpec(gtm_target="reference").describe()
    # the same published profile, read with the reference's GTM target; other changes are not published
    assert is_published_ers(reference, 28) and is_published_ers(ers_spec(28), 28)
    assert not is_published_ers(ers_spec(28, steps=8, gtm_target="reference"), 28)


def test_an_attack_context_refuses_an_unknown_gtm_target():
    import numpy as np
    import torch

    from robustdml.attacks.retrieval import AttackContext

    with pytest.raises(ValueError, match="gtm_target must be one of nearest, reference, got 'random'"):
        AttackContext(model=None, dataset=None, gallery=torch.zeros(1, 2), labels=np.zeros(1), engine=None,
                      device=torch.device("cpu"), generator=torch.Generator(), gtm_target="random")


def test_a_revised_attack_changes_the_key_of_every_spec_that_runs_it(monkeypatch):
    from robustdml.robustness import spec as S

    specs = {"qa-": AttackSpec(attacks=("qa-",)), "ers": AttackSpec(ers=ers_spec(28)),
             "nn": AttackSpec(attacks=("nn",)), "auto": AttackSpec()}
    before = {name: spec.key() for name, spec in specs.items()}
    monkeypatch.setitem(S.ATTACK_REVISIONS, "qa-", S.ATTACK_REVISIONS["qa-"] + 1)
    after = {name: spec.key() for name, spec in specs.items()}
    assert after["qa-"] != before["qa-"] and after["ers"] != before["ers"]
    assert after["nn"] == before["nn"] and after["auto"] == before["auto"]
    monkeypatch.setattr(S, "ERS_RESULT_REVISION", S.ERS_RESULT_REVISION + 1)
    again = {name: spec.key() for name, spec in specs.items()}
    assert again["ers"] != after["ers"] and all(again[name] == after[name] for name in ("qa-", "nn", "auto"))
