"""Write the small simulated dataset of .test/ (analysis-only mode, CI, the module test).

    .venv/bin/python .test/data/make.py

Known-truth data from ``cje.simulation.simulate`` (200 prompts, seed 2024, one
fresh draw per prompt of three targets, every row oracle-labelled so coverage
runs mask them and the fresh-draw labels are ground truth). The files are
committed; rerun this only to regenerate them on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path

from cje.simulation import simulate

N_PROMPTS = 200
SEED = 2024
HERE = Path(__file__).resolve().parent


def main() -> None:
    ds = simulate(N_PROMPTS, SEED)
    logged, fresh_dir = ds.write(HERE)
    (HERE / "truth.json").write_text(json.dumps(ds.truth, indent=1, sort_keys=True) + "\n")
    print(f"wrote {logged.relative_to(HERE.parent.parent)}, {fresh_dir.relative_to(HERE.parent.parent)}/, "
          f"truth {ds.truth}")


if __name__ == "__main__":
    main()
