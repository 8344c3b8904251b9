"""The public API (cje.analyze -> Result) on the real arena sample: same numbers as the CLI, any input form."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from matplotlib.figure import Figure

import cje
from cje.errors import ConfigError, InputError
from cje.results.model import CSV_COLUMNS
from tests.conftest import REPO

EXAMPLE = REPO / "docs" / "examples" / "arena_notebook.py"


def _numbers(payload: dict) -> dict:
    """The payload without what legitimately differs between two runs (creation time)."""
    meta = dict(payload["metadata"])
    meta.pop("created_at", None)
    return {**payload, "metadata": meta}


@pytest.fixture(scope="module")
def direct(arena_logged, arena_fresh):
    return cje.analyze(arena_logged, fresh_draws=arena_fresh, estimator="direct", oracle_coverage=0.25, seed=0)


def test_notebook_script_reproduces_the_cli_exactly(arena_dir, tmp_path):
    """docs/examples/arena_notebook.py (public API only) writes the same estimates.json numbers as `cje analyze`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CJE_ARENA_SAMPLE": str(arena_dir), "MPLBACKEND": "Agg"}
    cli_out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "cje", "analyze", "--data", str(arena_dir / "logged_data.jsonl"),
                           "--fresh-draws-dir", str(arena_dir / "fresh_draws"), "--estimator", "direct",
                           "--oracle-coverage", "0.25", "--seed", "0", "--output-dir", str(cli_out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    nb_out = tmp_path / "notebook"
    proc = subprocess.run([sys.executable, str(EXAMPLE), str(nb_out)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    cli = json.loads((cli_out / "estimates.json").read_text())
    notebook = json.loads((nb_out / "estimates.json").read_text())
    assert _numbers(notebook) == _numbers(cli)
    assert (nb_out / "estimates.csv").read_text() == (cli_out / "estimates.csv").read_text()
    assert "Best:" in proc.stdout and "clone" in proc.stdout


def test_import_cje_is_lazy_and_lists_the_api():
    code = ("import sys, cje; print(sorted(m for m in ('numpy', 'polars', 'scipy', 'matplotlib', 'cje.analysis.run') "
            "if m in sys.modules)); print(sorted(n for n in dir(cje) if not n.startswith('_')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout.splitlines()
    assert out[0] == "[]"
    public = eval(out[1])  # noqa: S307 - our own printed list
    assert {"analyze", "Result", "load_result", "plan_labels"} <= set(public)


def test_estimates_frame_has_the_csv_columns_and_values(direct, tmp_path):
    frame = direct.estimates
    assert frame.columns == CSV_COLUMNS
    assert frame["policy"].to_list() == direct.policies
    paths = direct.write(tmp_path / "out")
    from_csv = pl.read_csv(paths["csv"])
    assert from_csv.columns == CSV_COLUMNS
    for column in ("estimate", "se", "ci_lower", "ci_upper", "diff_vs_base", "p_value_vs_base", "ess_raw"):
        np.testing.assert_allclose(from_csv[column].to_numpy().astype(float), frame[column].to_numpy(), rtol=1e-12)
    payload = direct.to_dict()
    assert frame["estimate"].to_list() == payload["estimates"]
    # direct uses no weights: the used-weight columns are empty, the raw ESS is the diagnostics' value
    assert frame["ess_used"].null_count() == frame.height
    assert frame["ess_raw"].to_list() == [payload["metadata"]["diagnostics"][p]["weights_raw"]["ess"]
                                          for p in direct.policies]


def test_compare_reads_metadata_comparisons_in_either_order(direct):
    comps = direct.to_dict()["metadata"]["comparisons"]
    stored = next(c for c in comps if {c["policy_a"], c["policy_b"]} == {"clone", "parallel_universe_prompt"})
    a, b = stored["policy_a"], stored["policy_b"]
    ab, ba = direct.compare(a, b), direct.compare(b, a)
    assert (ab.difference, ab.se, ab.ci_lower, ab.ci_upper, ab.p_value) == (
        stored["difference"], stored["se"], stored["ci_lower"], stored["ci_upper"], stored["p_value"])
    assert ba.difference == -ab.difference and (ba.ci_lower, ba.ci_upper) == (-ab.ci_upper, -ab.ci_lower)
    assert ba.p_value == ab.p_value and ab.level == 0.95
    vs_base = direct.compare("clone")
    row = direct.estimates.filter(pl.col("policy") == "clone").row(0, named=True)
    assert (vs_base.difference, vs_base.ci_lower, vs_base.p_value) == (
        row["diff_vs_base"], row["diff_vs_base_ci_lower"], row["p_value_vs_base"])
    with pytest.raises(KeyError, match="no paired comparison"):
        direct.compare("clone", "nonexistent")


def test_best_policy_is_not_resolved_between_two_honest_policies(direct):
    best = direct.best_policy()
    # clone and parallel_universe_prompt differ by 0.001 with a CI across 0; unhelpful is CRITICAL
    assert best.policy in ("clone", "parallel_universe_prompt")
    assert best.resolved is False
    assert best.closest.policy_b in ("clone", "parallel_universe_prompt") and not best.closest.separated
    assert best.excluded == {"unhelpful": "CRITICAL, unreliable"}
    assert "NOT resolved" in best.describe()


def test_best_policy_resolved_when_every_pairwise_ci_is_above_zero(direct):
    payload = json.loads(json.dumps(direct.to_dict()))
    for c in payload["metadata"]["comparisons"]:  # make clone clearly ahead of everything
        if "clone" in (c["policy_a"], c["policy_b"]):
            sign = 1 if c["policy_a"] == "clone" else -1
            c.update(difference=sign * 0.05, ci_lower=sign * 0.05 - 0.01 if sign > 0 else -0.06,
                     ci_upper=0.06 if sign > 0 else -0.04, p_value=1e-6)
    from cje.results.decision import best_policy

    best = best_policy(payload)
    assert best.policy == "clone" and best.resolved
    assert "resolved" in best.describe() and "NOT" not in best.describe()


def test_summary_and_html_repr_answer_the_decision(direct):
    text = direct.summary()
    assert text.splitlines()[0].startswith("direct on ")
    assert "250 oracle labels (coverage 0.25 requested, 0.25 used)" in text
    assert "95% CIs" in text and "rows dropped: none" in text and "vs base" in text
    assert "Best:" in text and "Not candidates: unhelpful" in text
    html = direct._repr_html_()
    assert "Best:" in html and all(p in html for p in direct.policies)
    assert "<html" not in html  # a fragment for the notebook, not a page
    assert "clone" in repr(direct)


def test_real_level_is_printed(arena_logged, arena_fresh):
    result = cje.analyze(arena_logged, fresh_draws=arena_fresh, estimator="direct", oracle_coverage=0.25,
                         level=0.9)
    assert "90% CIs" in result.summary() and "95%" not in result.summary()
    assert result.compare("clone").level == 0.9 and result.estimates["level"].unique().to_list() == [0.9]


def test_plots_return_figures(direct):
    for fig in (direct.plot_estimates(), direct.plot_weights(), direct.plot_calibration()):
        assert isinstance(fig, Figure) and fig.axes


def test_write_produces_the_cli_files_and_load_result_reads_them(direct, tmp_path):
    paths = direct.write(tmp_path / "out", plots=True)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [".cje-set.json", "estimates.csv", "estimates.json", "plot_data.npz", "plots"]  # + the marker
    assert paths["dashboard"].name == "diagnostics_dashboard.html"
    assert f"Dashboard: {paths['dashboard']}" in direct.summary()
    loaded = cje.load_result(tmp_path / "out")
    assert _numbers(loaded.to_dict()) == _numbers(direct.to_dict())
    assert isinstance(loaded.plot_weights(), Figure)


def _arena_frames(arena_logged, arena_fresh) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    logged = pl.read_ndjson(arena_logged, infer_schema_length=None)
    fresh = {p: pl.read_ndjson(arena_fresh / f"{p}_responses.jsonl", infer_schema_length=None)
             for p in ("clone", "parallel_universe_prompt", "unhelpful")}
    return logged, fresh


def test_polars_frames_give_the_same_numbers_as_the_files(direct, arena_logged, arena_fresh):
    logged, fresh = _arena_frames(arena_logged, arena_fresh)
    result = cje.analyze(logged, fresh_draws=fresh, estimator="direct", oracle_coverage=0.25, seed=0)
    a, b = _numbers(result.to_dict()), _numbers(direct.to_dict())
    a["metadata"].pop("inputs"), b["metadata"].pop("inputs")
    assert a == b
    assert result.metadata["inputs"]["data"] == "<DataFrame>"


def test_pandas_renamed_fields_judge_scale_and_long_fresh_frame(direct, arena_logged, arena_fresh):
    """A pandas frame with other column names, a 0-10 judge, one column per target log-prob, and the
    fresh draws as one long frame with a policy column: the same estimates as the standard files."""
    logged, fresh = _arena_frames(arena_logged, arena_fresh)
    targets = logged.get_column("target_policy_logprobs").struct.unnest()
    user = (logged.with_columns(pl.col("metadata").struct.field("prompt_id").alias("qid"),
                                (pl.col("judge_score") * 10).alias("score10"), pl.col("oracle_label").alias("gold"))
            .drop("metadata", "judge_score", "oracle_label", "target_policy_logprobs")
            .hstack(targets.rename({c: f"lp_{c}" for c in targets.columns})))
    long = pl.concat([f.select(pl.col("prompt_id").alias("qid"), "draw_idx", (pl.col("judge_score") * 10).alias(
        "score10"), pl.col("oracle_label").alias("gold")).with_columns(pl.lit(p).alias("arm")) for p, f in fresh.items()])
    import pandas as pd  # built column by column: polars' to_pandas needs pyarrow, which is not a dependency

    result = cje.analyze(pd.DataFrame(user.to_dict(as_series=False)),
                         fresh_draws=pd.DataFrame(long.to_dict(as_series=False)), estimator="direct", oracle_coverage=0.25,
                         seed=0, judge_field="score10", oracle_field="gold", prompt_id_field="qid",
                         target_logprob_fields={c: f"lp_{c}" for c in targets.columns}, policy_field="arm",
                         judge_scale=(0, 10))
    for got, want in zip(result.to_dict()["estimates"], direct.to_dict()["estimates"]):
        assert math.isclose(got, want, rel_tol=1e-9)


def test_dataframe_errors_name_the_row_and_the_users_column(arena_logged):
    logged = pl.read_ndjson(arena_logged, infer_schema_length=None).with_columns(
        (pl.col("judge_score") * 10).alias("score10")).drop("judge_score")
    bad = logged.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(11.0).otherwise(pl.col("score10"))
                              .alias("score10"))
    with pytest.raises(InputError, match=r"data row 3, field 'score10': value 11.0 is outside judge_scale"):
        cje.analyze(bad, estimator="calibrated-ips", judge_field="score10", judge_scale=(0, 10))
    with pytest.raises(InputError, match=r"data row 0, field 'score10'.*outside \[0, 1\]"):
        cje.analyze(logged, estimator="calibrated-ips", judge_field="score10")  # forgot judge_scale
    with pytest.raises(ConfigError, match="judge_field.*'grade' not found"):
        cje.analyze(logged, estimator="calibrated-ips", judge_field="grade")
    with pytest.raises(ConfigError, match="did you mean 'calibrated-ips'"):
        cje.analyze(logged, estimator="calibrated_ips", judge_field="score10", judge_scale=(0, 10))


def test_renamed_fields_in_a_file_point_at_the_original_line(tmp_path, arena_logged):
    rows = [json.loads(x) for x in arena_logged.read_text().splitlines()[:40]]
    for r in rows:
        r["grade"] = r.pop("judge_score") * 5
    rows[7]["grade"] = 6.0
    path = tmp_path / "graded.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(InputError, match=rf"{path}:8, field 'grade'"):
        cje.analyze(path, estimator="calibrated-ips", judge_field="grade", judge_scale=(0, 5))
