"""The one atomic writer (cje.atomic / cje.data.jsonl) and the path-component rule (cje.names)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from cje import atomic
from cje.errors import ConfigError, InputError
from cje.atomic import atomic_output_path, atomic_write_bytes, atomic_write_text, atomic_writer
from cje.names import SAFE_COMPONENT_PATTERN, safe_component


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_published_mode_is_0666_minus_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == mode


def test_writes_replace_content_and_leave_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "first ü\n")
    atomic_write_text(target, "second\n")
    assert target.read_text(encoding="utf-8") == "second\n"
    assert sorted(os.listdir(target.parent)) == ["out.txt"]


def test_error_inside_block_keeps_old_file_and_removes_temporary(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as handle:
            handle.write(b"partial")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_output_path_for_writers_that_recreate_the_file(tmp_path):
    """A library that deletes and re-creates the temporary with its own mode still publishes 0666-umask."""
    old = os.umask(0o022)
    try:
        with atomic_output_path(tmp_path / "model.bin") as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".model.bin.") and tmp.exists()
            tmp.unlink()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, b"weights")
            os.close(fd)
    finally:
        os.umask(old)
    assert (tmp_path / "model.bin").read_bytes() == b"weights"
    assert stat.S_IMODE((tmp_path / "model.bin").stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["model.bin"]


def test_file_and_directory_are_fsynced_after_rename(tmp_path, monkeypatch):
    """fsync of the temp file before the rename, and of the folder after it."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(a, b):
        events.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_bytes(tmp_path / "x", b"1")
    assert events == ["fsync-file", "rename", "fsync-dir"]


def test_temporary_of_a_killed_writer_is_removed_on_next_write(tmp_path):
    code = ("import os, sys\nfrom cje.atomic import atomic_writer\n"
            "with atomic_writer(sys.argv[1]) as h:\n    h.write(b'half')\n    h.flush()\n"
            "    os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out.txt")])
    assert proc.returncode == -9
    leftovers = [e for e in os.listdir(tmp_path) if e.endswith(".tmp")]
    assert len(leftovers) == 1 and atomic.is_stale_temp(leftovers[0], "out.txt")
    # a live writer's temporary (this process) and another file's temporary are kept
    live = atomic.temp_name("out.txt")
    (tmp_path / live).write_bytes(b"")
    (tmp_path / atomic.temp_name("other.txt")).write_bytes(b"")
    atomic_write_text(tmp_path / "out.txt", "new")
    remaining = sorted(os.listdir(tmp_path))
    assert leftovers[0] not in remaining and live in remaining and "out.txt" in remaining
    assert len(remaining) == 3


@pytest.mark.parametrize("name", ["base", "clone", "gpt-4o_mini", "v1.2", "A_b-9.x", "_x", "x-"])
def test_safe_names_pass_unchanged(name):
    assert safe_component(name, "policy name") == name


@pytest.mark.parametrize("name", ["../../x", "..", ".", ".hidden", "a/b", "a\\b", "", "a b", "x\n",
                                  "a\x00b", "ü", "x" * 201, "../../ESCAPED", "-x", "--help"])
def test_unsafe_names_raise_one_line_config_error(name):
    with pytest.raises(ConfigError) as info:
        safe_component(name, "policy name")
    message = str(info.value)
    assert message.startswith("policy name") and "\n" not in message
    assert len(message) < 250


def test_non_string_name_and_input_error_location():
    with pytest.raises(ConfigError, match="must be a string, got int"):
        safe_component(3, "policy name")
    with pytest.raises(InputError) as info:
        safe_component("../x", "policy name", path="d.jsonl", line=4, field="target_policy_logprobs")
    assert str(info.value).startswith("d.jsonl:4, field 'target_policy_logprobs': policy name '../x'")


def test_schema_pattern_agrees_with_the_function():
    import re

    for name in ["base", "a.b", "-x", "../x", ".h", "a/b", "ü", ""]:
        try:
            safe_component(name, "n")
            ok = True
        except ConfigError:
            ok = False
        assert ok == bool(re.search(SAFE_COMPONENT_PATTERN, name)), name
