"""A seeded generator of malformed logged data, fresh draws and options for the fuzz test.

Each case starts from a small valid dataset (``hardlib.rows``) and applies zero to
three mutations drawn from the families below; options are drawn from valid values,
edge values and nonsense (nan, inf, negatives, huge). Everything is driven by one
``numpy.random.Generator``, so a seed reproduces every case exactly.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field

import numpy as np
from hardlib import POLICIES, fresh_rows, rows

# option -> (valid values, invalid or edge values); strings as on a command line, used in the
# '--flag=value' form so that '-1' is a value
OPTION_VALUES = {
    "--level": (["0.95", "0.9", "0.5", "1e-3", "0.999"], ["1.5", "1", "0", "-0.1", "nan", "inf", "-inf",
                                                          "0.999999999999"]),
    "--clip": (["100", "2", "1.0001", "1e308"], ["1", "0.5", "-3", "nan", "inf"]),
    "--rho": (["1", "0.5", "10", "1e-300"], ["0", "-1", "nan", "inf"]),
    "--oracle-coverage": (["1", "0.5", "0.8"], ["0", "-0.5", "1.5", "nan", "inf", "1e-9"]),
    "--probe-coverage": (["0", "0.5", "0.99"], ["1", "-1", "nan", "inf"]),
    "--transport-margin": (["0.05", "0.5"], ["0", "1", "-0.1", "nan", "inf"]),
    "--n-folds": (["5", "2", "3", "10"], ["1", "0", "-5", "5000", "1000000", "15"]),
    "--seed": (["0", "1", "123456789", "9223372036854775807"], ["-1", "9223372036854775808"]),
    "--calibration": (["monotone", "two_stage", "auto"], []),
}
ESTIMATORS_LOGGED = ["raw-ips", "calibrated-ips"]
ESTIMATORS_FRESH = ["direct", "naive", "raw-ips", "calibrated-ips"]
BAD_VALUES = ['"0.5"', "true", "false", "null", "[]", "{}", "[0.5]", '{"x": 1}', "NaN", "Infinity", "-Infinity",
              "1e999", "-1e999", "2", "-0.5", "0", "1", "12345678901234567890123", '""', '"abc"', "-1e-320"]
NUMERIC_FIELDS = ["base_policy_logprob", "judge_score", "oracle_label"]


@dataclass
class Case:
    """One generated input: file contents (bytes) and the extra command-line arguments."""

    logged: bytes
    fresh: dict[str, bytes] | None
    estimator: str
    options: list[str] = field(default_factory=list)
    mutations: list[str] = field(default_factory=list)


def _lines(items: list[dict]) -> list[str]:
    return [json.dumps(r) for r in items]


def _mutate_row(rng: np.random.Generator, row: dict) -> tuple[dict | str, str]:
    """A structural or type mutation of one row; returns (row or raw line, description)."""
    kind = rng.integers(0, 9)
    row = json.loads(json.dumps(row))
    if kind == 0:
        name = str(rng.choice(["prompt", "response", "base_policy_logprob", "target_policy_logprobs", "metadata"]))
        row.pop(name, None)
        return row, f"drop {name}"
    if kind == 1:
        name = str(rng.choice(NUMERIC_FIELDS))
        value = str(rng.choice(BAD_VALUES))
        text = json.dumps({k: v for k, v in row.items() if k != "metadata"})[:-1]
        meta = row.get("metadata", {})
        if name == "base_policy_logprob":
            text = text.replace(f'"{name}": {json.dumps(row[name])}', f'"{name}": {value}')
            return text + f', "metadata": {json.dumps(meta)}}}', f"{name}={value}"
        meta_text = json.dumps({k: v for k, v in meta.items() if k != name})[:-1]
        meta_text += ("" if meta_text == "{" else ", ") + f'"{name}": {value}}}'
        return text + f', "metadata": {meta_text}}}', f"metadata.{name}={value}"
    if kind == 2:
        policy = str(rng.choice(list(POLICIES)))
        row["target_policy_logprobs"][policy] = json.loads(str(rng.choice(["null", "0.5", "-1e308", "0", '"x"',
                                                                          "true", "[1]"])))
        return row, f"target {policy} type"
    if kind == 3:
        name = str(rng.choice(["../../x", ".hidden", "a/b", "", "x" * 300, "ok.name", "\u00fc", "a b"]))
        row["target_policy_logprobs"][name] = -10.0
        return row, f"policy name {name[:12]!r}"
    if kind == 4:
        text = json.dumps(row)
        key = str(rng.choice(["prompt", "judge_score", "base_policy_logprob", "metadata"]))
        return text[:-1] + f', "{key}": 0.5}}', f"duplicate {key}"
    if kind == 5:
        depth = int(rng.choice([10, 63, 65, 200, 5000]))
        return json.dumps(row)[:-1] + ', "nested": ' + "[" * depth + "]" * depth + "}", f"nesting {depth}"
    if kind == 6:
        row["prompt_id"] = json.loads(str(rng.choice(['"p0"', "7", "true", "null", "[1]", '""'])))
        return row, "prompt_id"
    if kind == 7:
        row["prompt"] = json.loads(str(rng.choice(["1", "null", "[]", '""', "true"])))
        return row, "prompt type"
    return "[1, 2]" if rng.random() < 0.5 else '"just a string"', "not an object"


def _mutate_bytes(rng: np.random.Generator, data: bytes) -> tuple[bytes, str]:
    kind = rng.integers(0, 9)
    if kind == 0:
        cut = int(rng.integers(0, max(len(data), 1)))
        return data[:cut], f"truncate at {cut}"
    if kind == 1:
        pos = int(rng.integers(0, max(len(data), 1)))
        junk = bytes(rng.integers(0, 256, size=int(rng.integers(1, 6))).astype(np.uint8).tolist())
        return data[:pos] + junk + data[pos:], "random bytes"
    if kind == 2:
        return gzip.compress(data), "gzip"
    if kind == 3:
        return data.decode("utf-8").encode("utf-16"), "utf-16"
    if kind == 4:
        return b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"), "bom+crlf"
    if kind == 5:
        return b"", "empty"
    if kind == 6:
        return data.replace(b"\n", b"\n\n  \n", 3), "blank lines"
    if kind == 7:
        pos = int(rng.integers(0, max(len(data), 1)))
        return data[:pos] + b"\x00" + data[pos:], "NUL"
    return data.replace(b"0.", b"\xe9.", 1), "latin-1 byte"


def generate(rng: np.random.Generator, n_rows: int = 40) -> Case:
    """One case: 40% clean data with random options, the rest mutated data or files."""
    items = rows(n=n_rows, labelled=int(rng.integers(5, n_rows + 1)), seed=int(rng.integers(0, 1000)))
    use_fresh = rng.random() < 0.3
    mutations: list[str] = []
    lines: list[str] = _lines(items)
    draw = rng.random()
    if draw >= 0.4:
        for _ in range(int(rng.integers(1, 4))):
            index = int(rng.integers(0, len(lines)))
            mutated, what = _mutate_row(rng, items[index])
            lines[index] = mutated if isinstance(mutated, str) else json.dumps(mutated)
            mutations.append(f"line {index + 1}: {what}")
        if rng.random() < 0.15 and len(lines) > 1:
            lines[1] = lines[0]
            mutations.append("duplicate prompt_id")
    logged = ("\n".join(lines) + "\n").encode("utf-8")
    if draw >= 0.85:
        logged, what = _mutate_bytes(rng, logged)
        mutations.append(what)
    fresh = None
    if use_fresh:
        fresh = {p: ("\n".join(_lines(fresh_rows(p, n_rows))) + "\n").encode() for p in POLICIES}
        if rng.random() < 0.5:
            policy = str(rng.choice(list(POLICIES)))
            if rng.random() < 0.3:
                del fresh[policy]
                mutations.append(f"fresh {policy} missing")
            else:
                fresh[policy], what = _mutate_bytes(rng, fresh[policy])
                mutations.append(f"fresh {policy}: {what}")
    estimator = str(rng.choice(ESTIMATORS_FRESH if use_fresh else ESTIMATORS_LOGGED))
    options: list[str] = []
    for flag, (valid, invalid) in OPTION_VALUES.items():
        if rng.random() < 0.25:
            values = invalid if invalid and rng.random() < 0.25 else valid
            options.append(f"{flag}={rng.choice(values)}")
    if rng.random() < 0.2:
        options.append("--refuse-unreliable")
    if use_fresh and rng.random() < 0.3:
        options.append("--allow-missing-fresh-draws")
    return Case(logged=logged, fresh=fresh, estimator=estimator, options=options, mutations=mutations)
