"""Every case listed in issue 14 ("Why") and 12.4's bad inputs, with the new expected behaviour.

Each runs ``cje analyze`` in-process (``cje.cli.main``) and checks the exit code, that
stderr is one line naming the file:line:field or the option, and what was written.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hardlib import (analyze_argv, assert_one_line_error, files_under, finite_estimates, fresh_rows, is_root, rows,
                     run_cli, write_fresh, write_jsonl)

from cje.errors import InputError
from cje.data.jsonl import MAX_DEPTH, read_jsonl_frame
from cje.results.files import MARKER


@pytest.fixture
def data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "logged.jsonl", rows())


# --- 1. numeric options: range, finiteness, against the data ---------------------------------
@pytest.mark.parametrize("flag, value, needle", [
    ("--level", "1.5", "must be in (0, 1)"), ("--level", "nan", "finite"), ("--level", "inf", "finite"),
    ("--level", "0", "must be in (0, 1)"), ("--clip", "nan", "finite"), ("--clip", "1", "> 1"),
    ("--rho", "nan", "finite"), ("--rho", "0", "> 0"), ("--rho", "-inf", "finite"),
    ("--oracle-coverage", "nan", "finite"), ("--oracle-coverage", "1.5", "(0, 1]"),
    ("--probe-coverage", "1", "[0, 1)"), ("--probe-coverage", "nan", "finite"),
    ("--transport-margin", "nan", "finite"), ("--transport-margin", "0", "(0, 1)"),
    ("--seed", "-1", "[0, 2^63 - 1]"), ("--n-folds", "1", "at least 2"),
])
def test_bad_option_is_one_line_naming_the_flag_and_writes_nothing(tmp_path, data, capsys, flag, value, needle):
    out = tmp_path / "out"
    code, _, err = run_cli(analyze_argv(data, out, f"{flag}={value}"), capsys)
    assert_one_line_error(code, err, f"option {flag} ", needle)
    assert not out.exists()


def test_n_folds_larger_than_half_the_labels_is_refused_before_any_estimator(tmp_path, capsys):
    data = write_jsonl(tmp_path / "logged.jsonl", rows(n=1000, labelled=1000))
    out = tmp_path / "out"
    code, _, err = run_cli(analyze_argv(data, out, "--n-folds", "5000", estimator="dr-cpo",
                                        ) + ["--fresh-draws-dir", str(write_fresh(tmp_path / "fresh", n=1000))],
                           capsys)
    assert_one_line_error(code, err, "option --n-folds (n_folds)", "5000 folds need at least 10000",
                          "calibration gets 1000", "at most 500")
    assert not out.exists()
    # at the limit it runs
    code, _, err = run_cli(analyze_argv(data, out, "--n-folds", "500"), capsys)
    assert code == 0, err


def test_option_messages_print_numbers_plainly(tmp_path, data, capsys):
    import numpy as np

    from cje.estimators.context import AnalysisOptions
    from cje.errors import OptionError
    from cje.analysis.options import check_options

    with pytest.raises(OptionError) as info:
        check_options(AnalysisOptions(level=np.float64(1.5)))
    assert "got 1.5" in str(info.value) and "np.float64" not in str(info.value)
    with pytest.raises(OptionError, match="must be an integer, got bool"):
        check_options(AnalysisOptions(n_folds=True))


# --- the publication invariant: never exit 0 with a null estimate ----------------------------
def test_a_policy_without_an_estimate_fails_unless_refuse_unreliable(tmp_path, capsys):
    items = rows()
    for r in items:
        r["target_policy_logprobs"]["b"] = None  # every row invalid for b: no estimate possible
    data = write_jsonl(tmp_path / "logged.jsonl", items)
    out = tmp_path / "out"
    code, _, err = run_cli(analyze_argv(data, out), capsys)
    assert_one_line_error(code, err, "no finite estimate for policy 'b'", "--refuse-unreliable")
    assert files_under(out) == []
    code, _, err = run_cli(analyze_argv(data, out, "--refuse-unreliable"), capsys)
    assert code == 3, err
    meta = json.loads((out / "estimates.json").read_text())["metadata"]
    assert meta["policies"]["b"]["estimate"] is None and meta["policies"]["a"]["estimate"] is not None


# --- 2. publication as a set ----------------------------------------------------------------
def test_failed_run_leaves_the_previous_set_untouched(tmp_path, data, capsys):
    out = tmp_path / "out"
    assert run_cli(analyze_argv(data, out), capsys)[0] == 0
    before = {p: (out / p).read_bytes() for p in ("estimates.json", "estimates.csv", "plot_data.npz")}
    bad = write_jsonl(tmp_path / "bad.jsonl", rows(), raw_lines={3: "{not json"})
    code, _, err = run_cli(analyze_argv(bad, out, estimator="calibrated-ips"), capsys)
    assert_one_line_error(code, err, "bad.jsonl:4")
    assert {p: (out / p).read_bytes() for p in before} == before
    assert files_under(out) == [MARKER, *sorted(before)]


@pytest.mark.slow
def test_rerun_without_plots_removes_the_earlier_dashboard(tmp_path, data, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(analyze_argv(data, out, "--plots"), capsys)
    assert code == 0, err
    assert (out / "plots" / "diagnostics_dashboard.html").exists()
    code, _, err = run_cli(analyze_argv(data, out, estimator="calibrated-ips"), capsys)
    assert code == 0, err
    assert files_under(out) == [MARKER, "estimates.csv", "estimates.json", "plot_data.npz"]
    assert json.loads((out / "estimates.json").read_text())["metadata"]["estimator"] == "calibrated-ips"


def test_stale_staging_folders_are_cleaned_on_start(tmp_path, data, capsys):
    from cje.atomic import temp_name

    out = tmp_path / "out"
    assert run_cli(analyze_argv(data, out), capsys)[0] == 0
    # an uncommitted staging folder of a killed writer (pid that cannot exist) and a stale .tmp
    dead = out / temp_name("cje-publish", suffix="").replace(f".{os.getpid()}.", ".999999999.")
    dead.mkdir()
    (dead / "estimates.json.new").write_text("{}")
    stale_tmp = out / temp_name("estimates.json").replace(f".{os.getpid()}.", ".999999999.")
    stale_tmp.write_text("partial")
    assert run_cli(analyze_argv(data, out, estimator="calibrated-ips"), capsys)[0] == 0
    assert files_under(out) == [MARKER, "estimates.csv", "estimates.json", "plot_data.npz"]


def test_plot_data_is_staged_under_a_unique_name_and_fsynced(tmp_path, data, capsys, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    out = tmp_path / "out"
    assert run_cli(analyze_argv(data, out), capsys)[0] == 0
    staged = [p for p in synced if p.endswith("plot_data.npz.new")]
    assert len(staged) == 1 and "/.cje-publish." in staged[0]
    assert str(out) in synced  # the output folder itself is fsynced after the renames


@pytest.mark.parametrize("kind", ["file", "file_parent"])
def test_output_dir_that_is_a_file_fails_at_the_start(tmp_path, data, capsys, kind):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = blocker if kind == "file" else blocker / "sub"
    code, _, err = run_cli(analyze_argv(data, out), capsys)
    assert_one_line_error(code, err, f"output folder {out}")
    assert blocker.read_text() == "x"


def test_read_only_output_dir_fails_at_the_start(tmp_path, data, capsys):
    """A folder this user cannot write: mode 0555 for a normal user; root ignores mode bits,
    so as root a folder of the kernel's read-only sysfs (creating a file there is refused)."""
    if is_root():
        import tempfile

        out = Path("/sys/kernel")
        try:
            fd, probe = tempfile.mkstemp(dir=out)
        except OSError:
            pass
        else:
            os.close(fd)
            os.unlink(probe)
            pytest.skip("no folder root cannot write on this machine")
    else:
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o555)
    before = sorted(os.listdir(out))
    code, _, err = run_cli(analyze_argv(data, out), capsys)
    assert_one_line_error(code, err, f"output folder {out}: not writable: Permission denied")
    assert sorted(os.listdir(out)) == before


# --- 3. the input reader ---------------------------------------------------------------------
def _analyze_file(tmp_path, capsys, data: Path) -> tuple[int, str]:
    out = tmp_path / "out"
    code, _, err = run_cli(analyze_argv(data, out), capsys)
    assert not out.exists()
    return code, err


@pytest.mark.parametrize("name, content, needle", [
    ("gzip", gzip.compress(b'{"a": 1}\n'), "gzip-compressed"),
    ("zstd", b"\x28\xb5\x2f\xfd" + b"\x00" * 20, "zstd-compressed"),
    ("bz2", b"BZh91AY&SY" + b"\x00" * 20, "bzip2-compressed"),
    ("utf16", '{"a": 1}\n'.encode("utf-16"), "UTF-16"),
    ("utf16-no-bom", '{"a": 1}\n'.encode("utf-16-le"), "NUL bytes"),
    ("binary", bytes(range(256)) * 4, "NUL bytes"),
    ("latin1", '{"prompt": "caf\u00e9"}\n'.encode("latin-1"), "not valid UTF-8 (byte 0xe9 at column 16)"),
    ("empty", b"", "file is empty"),
    ("blank", b"\n \n\t\n", "file is empty"),
])
def test_undecodable_files_get_one_line(tmp_path, capsys, name, content, needle):
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(content)
    code, err = _analyze_file(tmp_path, capsys, path)
    assert_one_line_error(code, err, str(path), needle)


def test_folder_missing_file_dangling_symlink_and_symlink_loop(tmp_path, capsys):
    loop = tmp_path / "loop.jsonl"
    os.symlink(loop, loop)
    dangling = tmp_path / "dangling.jsonl"
    os.symlink(tmp_path / "nowhere.jsonl", dangling)
    cases = {tmp_path: "is a folder", tmp_path / "missing.jsonl": "file not found",
             dangling: f"is a dangling symlink to {tmp_path / 'nowhere.jsonl'}", loop: "symbolic link loop"}
    for path, needle in cases.items():
        code, err = _analyze_file(tmp_path, capsys, path)
        assert_one_line_error(code, err, f"{path}: {needle}")


def test_duplicate_key_is_an_error_naming_line_and_key(tmp_path, capsys):
    lines = [json.dumps(r) for r in rows()]
    lines[5] = lines[5].replace('"target_policy_logprobs": {"a": ', '"target_policy_logprobs": {"a": -11.0, "a": ')
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, err = _analyze_file(tmp_path, capsys, path)
    assert_one_line_error(code, err, f"{path}:6, field 'a': key 'a' appears twice")


@pytest.mark.parametrize("text", ['{"x": 1, "x": 2}', '{"m": {"k": 1, "k": null}}', '{"x": 1, "\\u0078": 2}',
                                  '{"l": [{"k": 1}, {"k": 2, "k": 3}]}', '{"x": NaN, "x": 1}'])
def test_duplicate_keys_found_by_the_fast_and_the_slow_parser(tmp_path, text):
    path = tmp_path / "d.jsonl"
    path.write_text('{"x": 0, "m": {"k": 0}, "l": [{"k": 0}]}\n' + text + "\n")
    with pytest.raises(InputError, match=r"d\.jsonl:2.*appears twice"):
        read_jsonl_frame(path)


def test_same_key_in_different_objects_is_not_a_duplicate(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_text('{"prompt_id": "a", "metadata": {"prompt_id": "a"}, "l": [{"k": 1}, {"k": 2}], '
                    '"s": "\\"prompt_id\\": 1"}\n')
    assert read_jsonl_frame(path).height == 1


def test_deep_nesting_fails_before_any_parser(tmp_path, capsys):
    depth = 100_000
    path = tmp_path / "deep.jsonl"
    lines = [json.dumps(r) for r in rows()]
    lines[2] = '{"x": ' + "[" * depth + "]" * depth + "}"
    path.write_text("\n".join(lines) + "\n")
    code, err = _analyze_file(tmp_path, capsys, path)
    assert_one_line_error(code, err, f"{path}:3: nested deeper than {MAX_DEPTH}")
    ok = tmp_path / "ok.jsonl"
    ok.write_text('{"x": ' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}\n")
    assert read_jsonl_frame(ok).height == 1


def test_a_1gb_line_fails_fast_with_bounded_memory(tmp_path):
    """Peak memory of the child stays far below the 1 GB a whole-line read would need."""
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as fh:
        fh.write(b'{"prompt": "')
        block = b"x" * (1 << 20)
        for _ in range(1024):
            fh.write(block)
        fh.write(b'"}\n')
    # peak RSS from VmHWM, which a new program image starts afresh: getrusage's ru_maxrss survives
    # exec, so it reported the (large) pytest parent's size when the whole suite ran first
    code = ("import re, sys, time\n"
            "from cje.cli import main\n"
            "t = time.perf_counter()\n"
            "rc = main(['analyze', '--data', sys.argv[1], '--estimator', 'raw-ips', '--output-dir', sys.argv[2]])\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "print(round(time.perf_counter() - t, 3), hwm)\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    path.unlink()
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"cje analyze: error: {path}:1: line longer than 16,777,216 bytes "
                                   "(not a JSONL file, or one record too large)")
    seconds, peak_kib = proc.stdout.split()
    assert float(seconds) < 5.0  # stops after the first 16 MiB chunk
    assert int(peak_kib) < 400 * 1024  # interpreter + numpy + polars + one chunk; the line is 1 GB


@pytest.mark.parametrize("value, message", [('"0.5"', "must be a number, got the string '0.5'"),
                                            ("true", "must be a number, got true"),
                                            ("[0.5]", "is an array here but a scalar on earlier lines")])
def test_numbers_must_be_json_numbers(tmp_path, capsys, value, message):
    lines = [json.dumps(r) for r in rows()]
    lines[7] = lines[7].replace('"metadata": {"judge_score": ', f'"metadata": {{"judge_score": {value}, "x": ')
    path = tmp_path / "typed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, err = _analyze_file(tmp_path, capsys, path)
    assert_one_line_error(code, err, f"{path}:8, field 'metadata.judge_score': {message}")


def test_boolean_log_prob_is_not_one(tmp_path, capsys):
    lines = [json.dumps(r) for r in rows()]
    lines[4] = lines[4].replace('"base_policy_logprob": ', '"base_policy_logprob": true, "y": ')
    path = tmp_path / "bool.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, err = _analyze_file(tmp_path, capsys, path)
    assert_one_line_error(code, err, f"{path}:5, field 'base_policy_logprob': must be a number, got true")


def test_out_of_range_value_is_printed_plainly(tmp_path, capsys):
    items = rows()
    items[3]["metadata"]["judge_score"] = 1.5
    path = write_jsonl(tmp_path / "range.jsonl", items)
    code, err = _analyze_file(tmp_path, capsys, path)
    assert_one_line_error(code, err, f"{path}:4, field 'judge_score': value 1.5 is outside [0, 1]")
    assert "np.float64" not in err


def test_all_null_judge_scores_are_blamed_on_the_judge(tmp_path, capsys):
    items = rows()
    for r in items:
        r["metadata"]["judge_score"] = None
    path = write_jsonl(tmp_path / "nojudge.jsonl", items)
    code, err = _analyze_file(tmp_path, capsys, path)
    assert_one_line_error(code, err, "every judge_score is null", "judge")
    assert "oracle" not in err


def test_empty_fresh_draws_file_and_fresh_draws_folder_that_is_a_file(tmp_path, data, capsys):
    fresh = write_fresh(tmp_path / "fresh")
    (fresh / "b_responses.jsonl").write_text("")
    out = tmp_path / "out"
    code, _, err = run_cli(analyze_argv(data, out, "--fresh-draws-dir", fresh, estimator="direct"), capsys)
    assert_one_line_error(code, err, f"{fresh / 'b_responses.jsonl'}: file is empty")
    code, _, err = run_cli(analyze_argv(data, out, "--fresh-draws-dir", data, estimator="direct"), capsys)
    assert_one_line_error(code, err, f"{data}: fresh-draws folder is a file, not a folder")
    assert not out.exists()


# --- 4. names that become paths --------------------------------------------------------------
def test_policy_key_with_path_traversal_is_rejected_not_read(tmp_path, capsys):
    fresh = write_fresh(tmp_path / "a" / "b" / "fresh")
    # the file a '../../x' key would have read: two folders above the fresh-draws folder
    write_jsonl(tmp_path / "a" / "x_responses.jsonl", fresh_rows("a"))
    items = rows()
    for r in items:
        r["target_policy_logprobs"]["../../x"] = -10.5
    data = write_jsonl(tmp_path / "logged.jsonl", items)
    out = tmp_path / "out"
    code, _, err = run_cli(analyze_argv(data, out, "--fresh-draws-dir", fresh / "..", estimator="direct"), capsys)
    assert_one_line_error(code, err, f"{data}:1, field 'target_policy_logprobs': policy name '../../x' is not allowed")
    assert not out.exists()


@pytest.mark.parametrize("name", [".hidden", "a/b", "a b", "\u00fc"])
def test_other_unsafe_policy_names(tmp_path, capsys, name):
    items = rows()
    items[2]["target_policy_logprobs"][name] = -10.0
    data = write_jsonl(tmp_path / "logged.jsonl", items)
    code, err = _analyze_file(tmp_path, capsys, data)
    assert_one_line_error(code, err, f"{data}:3, field 'target_policy_logprobs': policy name")


# --- 5. smaller cases ------------------------------------------------------------------------
def test_missing_fresh_draws_file_is_reported_not_ignored(tmp_path, data, capsys):
    fresh = write_fresh(tmp_path / "fresh", policies=("a",))
    out = tmp_path / "out"
    code, _, err = run_cli(analyze_argv(data, out, "--fresh-draws-dir", fresh, "--allow-missing-fresh-draws"),
                           capsys)
    assert code == 0, err
    meta = json.loads((out / "estimates.json").read_text())["metadata"]
    assert meta["fresh_draws_missing"] == ["b"]
    assert any("no fresh draws file for 1 policies (b)" in w for w in meta["warnings"])
    # an estimator that needs fresh draws refuses, with or without the flag
    code, _, err = run_cli(analyze_argv(data, tmp_path / "out2", "--fresh-draws-dir", fresh,
                                        "--allow-missing-fresh-draws", estimator="direct"), capsys)
    assert code == 2 and "'b'" in err and len(err.strip().splitlines()) == 1
    assert finite_estimates(out)
