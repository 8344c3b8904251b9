"""Paired comparisons are bounded, against the real CLI (``python -m cje`` in a subprocess):
against the base by default (plus the pairs the decision reads), every pair only with
``--comparisons all`` and refused above the documented cap; every reader says when a
pair was not computed, and the decision is the one every pair gives."""

from __future__ import annotations

import json
from itertools import combinations

import pytest
from hardlib import cje_process, many_policies, one_line_error

from cje.api.result import load_result
from cje.results.decision import MAX_ALL_PAIRS, best_policy, decision_pairs


@pytest.fixture(scope="module")
def six(tmp_path_factory) -> dict:
    """One dataset with 6 targets analysed twice: default comparisons and --comparisons all."""
    root = tmp_path_factory.mktemp("six")
    data = many_policies(root / "logged.jsonl", 6)
    out = {}
    for mode in ("base", "all"):
        extra = [] if mode == "base" else ["--comparisons", "all"]
        proc = cje_process("analyze", "--data", data, "--estimator", "calibrated-ips", "--output-dir", root / mode,
                           *extra, cwd=root)
        assert proc.returncode == 0, proc.stderr
        out[mode] = json.loads((root / mode / "estimates.json").read_text())
    out["root"], out["data"] = root, data
    return out


def _pairs(payload: dict) -> set[frozenset]:
    return {frozenset((c["policy_a"], c["policy_b"])) for c in payload["metadata"]["comparisons"]}


# --- comparisons -----------------------------------------------------------------------------
def test_default_compares_each_target_with_the_base_and_the_best_with_its_rivals(six):
    base, every = six["base"], six["all"]
    targets = base["metadata"]["target_policies"]
    assert base["metadata"]["comparisons_mode"] == "base" and every["metadata"]["comparisons_mode"] == "all"
    expected = {frozenset((t, "base")) for t in targets} | {frozenset(p) for p in decision_pairs(base)}
    assert _pairs(base) == expected
    assert len(decision_pairs(base)) >= 1 and len(expected) < len(targets) * (len(targets) + 1) // 2
    assert _pairs(every) == {frozenset(p) for p in combinations(["base", *targets], 2)}  # 21 pairs
    # the base is always second, as before
    assert all(c["policy_b"] == "base" for c in base["metadata"]["comparisons"] if "base" in
               (c["policy_a"], c["policy_b"]))


def test_the_stored_pairs_and_the_decision_agree_with_all_pairs(six):
    every = {frozenset((c["policy_a"], c["policy_b"])): c for c in six["all"]["metadata"]["comparisons"]}
    for c in six["base"]["metadata"]["comparisons"]:
        ref = every[frozenset((c["policy_a"], c["policy_b"]))]
        sign = 1 if ref["policy_a"] == c["policy_a"] else -1
        assert c["difference"] == pytest.approx(sign * ref["difference"], abs=1e-12)
        assert (c["se"], c["df"], c["p_value"]) == pytest.approx((ref["se"], ref["df"], ref["p_value"]), abs=1e-12)
    for include_base in (True, False):
        a, b = best_policy(six["base"], include_base), best_policy(six["all"], include_base)
        assert (a.policy, a.resolved, a.candidates) == (b.policy, b.resolved, b.candidates)
        assert a.closest.policy_b == b.closest.policy_b and a.closest.p_value == pytest.approx(b.closest.p_value)
        assert a.closest.se is not None  # a real comparison, not a placeholder without an SE


def test_a_pair_that_was_not_computed_says_so_and_how_to_get_it(six):
    base = load_result(six["root"] / "base" / "estimates.json")
    stored = _pairs(six["base"])
    targets = six["base"]["metadata"]["target_policies"]
    a, b = next((a, b) for a, b in combinations(targets, 2) if frozenset((a, b)) not in stored)
    with pytest.raises(KeyError, match="was not computed.*--comparisons all"):
        base.compare(a, b)
    assert base.compare(targets[0]).policy_b == "base"  # against the base: always there
    with pytest.raises(KeyError, match="unknown policy 'nope'"):
        base.compare("nope")
    every = load_result(six["root"] / "all" / "estimates.json")
    assert every.compare(a, b).difference == pytest.approx(-every.compare(b, a).difference)


def test_plan_names_a_pair_the_pilot_did_not_compute_in_one_line(six):
    targets = six["base"]["metadata"]["target_policies"]
    stored = _pairs(six["base"])
    a, b = next((a, b) for a, b in combinations(targets, 2) if frozenset((a, b)) not in stored)
    pilot = six["root"] / "base" / "estimates.json"
    proc = cje_process("plan", "--pilot", pilot, "--compare", a, b, "--margin", "0.05", cwd=six["root"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "not computed" in proc.stderr and "--comparisons all" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    ok = cje_process("plan", "--pilot", six["root"] / "all" / "estimates.json", "--compare", a, b, "--margin", "0.05",
                     cwd=six["root"])
    assert ok.returncode == 0, ok.stderr


def test_all_pairs_above_the_cap_is_one_line_naming_the_flag_and_writes_nothing(tmp_path):
    k = 200  # 200 * 201 / 2 = 20,100 pairs > MAX_ALL_PAIRS
    assert k * (k + 1) // 2 > MAX_ALL_PAIRS >= (k - 1) * k // 2
    data = many_policies(tmp_path / "many.jsonl", k, n=40)
    out = tmp_path / "out"
    proc = cje_process("analyze", "--data", data, "--estimator", "raw-ips", "--output-dir", out, "--comparisons", "all",
                       cwd=tmp_path)
    one_line_error(proc, "analyze", "--comparisons", "20,100 pairs", f"{MAX_ALL_PAIRS:,}")
    assert not out.exists()
    proc = cje_process("analyze", "--data", data, "--estimator", "raw-ips", "--output-dir", out, "--quiet",
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads((out / "estimates.json").read_text())
    assert k <= len(payload["metadata"]["comparisons"]) <= 2 * k  # linear, not k(k+1)/2


def test_a_bad_comparisons_value_is_refused_by_the_flag_and_the_api(tmp_path):
    data = many_policies(tmp_path / "d.jsonl", 2)
    proc = cje_process("analyze", "--data", data, "--estimator", "raw-ips", "--output-dir", tmp_path / "o",
                       "--comparisons", "every", cwd=tmp_path)
    assert proc.returncode == 2 and "--comparisons" in proc.stderr and "Traceback" not in proc.stderr
    import cje as api
    from cje.errors import OptionError

    with pytest.raises(OptionError, match="--comparisons"):
        api.analyze(str(data), estimator="raw-ips", comparisons="every")
    with pytest.raises(OptionError, match="unknown policy 'zz'"):
        api.analyze(str(data), estimator="raw-ips", comparisons=[("t00", "zz")])
    named = api.analyze(str(data), estimator="raw-ips", comparisons=[("t00", "t01")])
    assert named.compare("t00", "t01").se is not None
