"""A notebook session on the Chatbot Arena sample, using only the public API (``import cje``).

Run as a script (``python docs/examples/arena_notebook.py OUT_DIR``) or paste the cells into a
notebook. tests/api/test_api.py runs it and checks that OUT_DIR/estimates.json holds exactly
the numbers of ``cje analyze --estimator direct --oracle-coverage 0.25 --seed 0`` on the same files.
The sample is read by path: $CJE_ARENA_SAMPLE, else ../shared/data/arena_sample beside the repo.
"""

import os
import sys
from pathlib import Path

import cje

# %% where the data is
sample = Path(os.environ.get("CJE_ARENA_SAMPLE", Path(__file__).resolve().parents[3] / "shared" / "data"
                             / "arena_sample"))
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("arena_direct")

# %% one analysis: the direct method with a quarter of the oracle labels
result = cje.analyze(sample / "logged_data.jsonl", fresh_draws=sample / "fresh_draws", estimator="direct",
                     oracle_coverage=0.25, seed=0)

# %% the table (a polars DataFrame; the columns of estimates.csv)
print(result.estimates.select("policy", "estimate", "ci_lower", "ci_upper", "diff_vs_base", "p_value_vs_base",
                              "status"))

# %% the decision: is the best policy really better than the runner-up?
best = result.best_policy()
print(best.describe())
print(result.compare("clone", "parallel_universe_prompt").describe())

# %% everything at once, as the CLI prints it
print(result.summary())

# %% figures (in a notebook they display themselves)
figure = result.plot_estimates()

# %% the same files as `cje analyze --output-dir OUT --plots`
paths = result.write(out, plots=True)
print("wrote", paths["json"], "and", paths["dashboard"])
