"""RobustnessResult: one typed record, one JSON schema with a version; it round-trips, reads the
robustness.json of the previous release (kept as a fixture) and refuses what it cannot read, naming the file."""

import json
import math
from pathlib import Path

import pytest

from robustdml.robustness.result import ResultFormatError, RobustnessResult, VERSION
from robustdml.robustness.spec import AttackSpec

FIXTURE = Path(__file__).parent / "fixtures" / "robustness-v1.json"


def test_the_previous_release_s_result_is_read_with_every_number():
    values = json.loads(FIXTURE.read_text())
    result = RobustnessResult.from_dict(values, source=str(FIXTURE))
    assert result.eps == (0.01, 0.05, 0.1)
    for eps in result.eps:
        old = values["worst_case"][str(eps)]
        assert result.at(eps).r1.value == old["R@1"] and [result.at(eps).r1.low, result.at(eps).r1.high] == old["R@1_ci"]
        assert result.at(eps).passes_per_query == old["passes_per_query"] and result.at(eps).correct is None
        assert result.check_at(eps).converged == values["convergence"][str(eps)]["converged"]
    assert result.clean.value == values["clean"]["R@1"] and result.settings.queries == 40
    assert result.ers.ers == values["ers"]["ERS"] and result.ers.terms == values["ers"]["terms"]
    assert len(result.rows) == len(values["rows"]) and result.queries is None
    assert [row.attack for row in result.rows] == [row["attack"] for row in values["rows"]]
    # its spec (flat option fields) is read too, into the options of the attacks it ran
    assert AttackSpec.from_dict(result.settings.spec).max_queries == 40


def test_a_result_round_trips_through_json_and_writes_its_version():
    result = RobustnessResult.from_dict(json.loads(FIXTURE.read_text()))
    result.queries = list(range(result.settings.queries))
    entry = result.at(0.05)
    entry.correct = [i % 3 == 0 for i in range(result.settings.queries)]
    result.clean_map = float("nan")                 # JSON has no NaN: written as null, read back as NaN
    text = json.dumps(result.to_dict(), allow_nan=False)
    again = RobustnessResult.from_dict(json.loads(text))
    assert json.loads(text)["version"] == VERSION and json.loads(text)["schema"] == "robustdml-robustness"
    assert math.isnan(again.clean_map)
    again.clean_map = result.clean_map = 0.0
    assert again == result


@pytest.mark.parametrize("values,fragment", [
    ([], "not a robustness result"), ({"clean": {}}, "not a complete robustness result"),
    ({"schema": "robustdml-robustness", "version": VERSION + 1}, "upgrade robustdml"),
    ({"schema": "something-else"}, "schema 'something-else'")])
def test_what_is_not_a_result_is_refused_naming_the_source(values, fragment):
    with pytest.raises(ResultFormatError, match=fragment) as error:
        RobustnessResult.from_dict(values, source="RUN/robustness/x/robustness.json")
    assert "RUN/robustness/x/robustness.json" in str(error.value)
