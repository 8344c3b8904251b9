"""The provider preflight (``cje check-provider`` and the first step of every LLM stage)
against the simulated provider (tests/servers/provider_sim.py) configured to lack each
capability, refusing it (HTTP 400/404, as llama-server refuses echo) or ignoring it
(an answer without it); and against the real embedded model server (marker llm).

Every case runs the ``cje`` command in this process; requests are counted in the
simulator's own request log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import provider_sim  # tests/servers is on sys.path (conftest)
import pytest
from llm_testlib import REPO, RUBRICS, write_config, write_prompts

from cje.cli import main as cli_main
from cje.llm.presets import CAPABILITIES, PRESETS, recognise


class Sim:
    """provider_sim.py as a subprocess with ``settings``; ``records()`` reads its log."""

    def __init__(self, tmp: Path, **settings):
        self.log = tmp / f"sim-{len(list(tmp.glob('sim-*')))}.jsonl"
        cfg = tmp / f"{self.log.stem}.json"
        cfg.write_text(json.dumps({"latency_median_s": 0.001, "latency_sigma": 0.0,
                                   "tail_p": 0.0, **settings}))
        self.proc = subprocess.Popen([sys.executable, str(REPO / "tests/servers/provider_sim.py"),
                                      "--settings", str(cfg), "--log", str(self.log)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("URL "), line
        self.url = line.split()[1]

    def records(self) -> list[dict]:
        time.sleep(0.7)  # the simulator flushes its log every 0.5 s
        return provider_sim.read_log(self.log) if self.log.exists() else []

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def sim_factory(tmp_path):
    sims = []

    def make(**settings) -> Sim:
        sims.append(Sim(tmp_path, **settings))
        return sims[-1]
    yield make
    for s in sims:
        s.close()


def sim_config(url: str, *, judge: str = "structured", gen_template: str = "llama3") -> dict:
    """Policies ``base`` (llama3 template: completions, teacher-forceable) and ``chatty``
    (chat), a judge with ``judge`` method and a yes/no-log-prob oracle, all on the sim."""
    pol = {"provider": "sim", "model": "sim-model", "chat_template": gen_template,
           "system_prompt": "You are a helpful assistant.", "temperature": 1.0,
           "max_tokens": 32}
    judge_rubric = "judge.txt" if judge == "yes_no_logprob" else "judge_score.txt"
    return {
        "providers": {"sim": {"kind": "openai", "base_url": url, "max_concurrency": 8,
                              "timeout_s": 10, "max_retries": 1, "retry_backoff_s": 0.01,
                              "retry_backoff_max_s": 0.02}},
        "base_policy": "base",
        "policies": {"base": pol, "chatty": {**pol, "chat_template": "none"}},
        "judge": {"provider": "sim", "model": "sim-judge", "method": judge,
                  "rubric_file": str(RUBRICS / judge_rubric), "parse_retries": 1},
        "oracle": {"provider": "sim", "model": "sim-oracle", "method": "yes_no_logprob",
                   "rubric_file": str(RUBRICS / "oracle.txt"), "coverage": 1.0, "seed": 7},
        "execution": {"shards": 1},
    }


def check(cfg_path: Path, *extra: str) -> int:
    return cli_main(["check-provider", "--config", str(cfg_path), "--request-cache",
                     str(cfg_path.parent / "requests"), "--api-log",
                     str(cfg_path.parent / "api.log"), *extra])


def test_full_sim_passes_every_capability_and_a_second_check_sends_nothing(sim_factory,
                                                                          tmp_path, capsys):
    sim = sim_factory()
    cfg = write_config(tmp_path / "cfg.yaml", sim_config(sim.url))
    assert check(cfg) == 0
    out = capsys.readouterr().out
    for cap in CAPABILITIES:  # every capability is needed by one of the configured stages
        assert any(line.split()[:2] == ["ok", cap] for line in out.splitlines()), (cap, out)
    sent = len(sim.records())
    # one probe per distinct request: completions + chat (generate), prompt log-probs (one
    # per temperature and model), chat + JSON mode (judge), completion log-probs (oracle)
    assert sent == 6
    assert check(cfg) == 0  # passed checks are in the request cache: nothing sent again
    assert "ok (cached)" in capsys.readouterr().out
    assert len(sim.records()) == sent


@pytest.mark.parametrize("mode", ["refuse", "ignore"])
@pytest.mark.parametrize("lacks,stage,needed_by", [
    ("prompt_logprobs", "logprobs", "logprobs (policy 'base')"),
    ("completion_logprobs", "oracle", "oracle (method yes_no_logprob)"),
    ("json_mode", "judge", "judge (method structured)"),
])
def test_a_missing_capability_fails_naming_it_the_provider_model_and_stage(
        sim_factory, tmp_path, capsys, mode, lacks, stage, needed_by):
    sim = sim_factory(lacks=[lacks], lack_mode=mode)
    cfg = write_config(tmp_path / "cfg.yaml", sim_config(sim.url))
    assert check(cfg) == 2
    captured = capsys.readouterr()
    err = [x for x in captured.err.splitlines() if x.startswith("cje ")]
    assert len(err) == 1 and err[0].startswith("cje check-provider: error: provider 'sim'")
    line = err[0]
    assert f"needed by {needed_by}" in line and "model '" in line
    assert {"prompt_logprobs": "prompt log-probs", "completion_logprobs": "completion log-probs",
            "json_mode": "JSON mode"}[lacks] in line
    assert "cannot do" in line and "Traceback" not in captured.err
    expected = {"refuse": "HTTP 400", "ignore": {
        "prompt_logprobs": "prompt token(s) only", "completion_logprobs": "no top_logprobs",
        "json_mode": "accepted but ignored"}[lacks]}[mode]
    assert expected in line
    # the other capabilities are still reported as passing
    assert sum(x.split()[0] == "ok" for x in captured.out.splitlines()[1:]) == 5
    # only the stage that needs the capability fails: checking the other stages passes
    others = ",".join(s for s in ("generate", "logprobs", "judge", "oracle") if s != stage)
    assert check(cfg, "--stages", others) == 0


def test_missing_endpoints_fail_with_404(sim_factory, tmp_path, capsys):
    sim = sim_factory(lacks=["chat"])
    cfg = write_config(tmp_path / "cfg.yaml", sim_config(sim.url))
    assert check(cfg, "--stages", "generate") == 2
    err = capsys.readouterr().err
    assert "cannot do chat completions" in err and "needed by generate (policy 'chatty')" in err
    assert "HTTP 404" in err
    sim = sim_factory(lacks=["completions"])
    cfg = write_config(tmp_path / "cfg2.yaml", sim_config(sim.url))
    assert check(cfg, "--stages", "generate") == 2
    assert "cannot do text completions" in capsys.readouterr().err


def _responses(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({
        "prompt_id": f"q{i:03d}", "prompt": f"q{i:03d}: say something", "policy": "base",
        "draw_idx": 0, "response": f"Answer {i}. Quality: 0.5.", "status": "ok",
        "finish_reason": "stop"}) + "\n" for i in range(n)))
    return path


@pytest.mark.parametrize("mode", ["refuse", "ignore"])
def test_a_stage_on_a_lacking_provider_stops_after_the_preflight(sim_factory, tmp_path, capsys,
                                                                 mode):
    """300 rows to teacher-force on an endpoint without prompt log-probs: one request (the
    probe), exit 2, nothing written -- not 300 failed rows."""
    sim = sim_factory(lacks=["prompt_logprobs"], lack_mode=mode)
    cfg = write_config(tmp_path / "cfg.yaml", sim_config(sim.url))
    responses = _responses(tmp_path / "base.jsonl", 300)
    rc = cli_main(["logprobs", "--config", str(cfg), "--responses", str(responses),
                   "--policies", "base", "--output-dir", str(tmp_path / "lp"),
                   "--request-cache", str(tmp_path / "requests"),
                   "--api-log", str(tmp_path / "api.log")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot do prompt log-probs" in err
    assert "needed by logprobs (policy 'base')" in err
    records = sim.records()
    assert [r["kind"] for r in records] == ["echo"]  # the probe, and nothing after it
    assert not (tmp_path / "lp").exists() or not list((tmp_path / "lp").iterdir())
    calls = [json.loads(x) for x in open(tmp_path / "api.log")]
    assert [c["stage"] for c in calls if "stage" in c and "event" not in c] == \
        ["preflight:logprobs:base"]
    # the failure is not cached as a pass: after the provider is fixed the check is redone
    fixed = sim_factory()
    cfg = write_config(tmp_path / "cfg.yaml", sim_config(fixed.url))
    responses = _responses(tmp_path / "base.jsonl", 5)
    assert cli_main(["logprobs", "--config", str(cfg), "--responses", str(responses),
                     "--policies", "base", "--output-dir", str(tmp_path / "lp"),
                     "--request-cache", str(tmp_path / "requests"), "--api-log",
                     str(tmp_path / "api.log")]) == 0
    assert [r["kind"] for r in fixed.records()] == ["echo"] * 6  # probe + 5 rows


def test_judge_and_generate_stop_after_the_preflight(sim_factory, tmp_path, capsys):
    sim = sim_factory(lacks=["json_mode", "chat"], lack_mode="refuse")
    cfg = write_config(tmp_path / "cfg.yaml", sim_config(sim.url))
    prompts = write_prompts(tmp_path / "prompts.jsonl", 50)
    assert cli_main(["generate", "--config", str(cfg), "--policy", "chatty", "--prompts",
                     str(prompts), "--output", str(tmp_path / "g.jsonl"), "--api-log",
                     str(tmp_path / "api.log")]) == 2
    assert "cannot do chat completions" in capsys.readouterr().err
    assert len(sim.records()) == 1 and not (tmp_path / "g.jsonl").exists()
    assert cli_main(["judge", "--config", str(cfg), "--input",
                     str(_responses(tmp_path / "base.jsonl", 50)), "--output",
                     str(tmp_path / "j.jsonl"), "--api-log", str(tmp_path / "api.log")]) == 2
    assert "cannot do chat completions" in capsys.readouterr().err
    assert len(sim.records()) == 2 and not (tmp_path / "j.jsonl").exists()


def test_a_temperature_the_endpoint_cannot_score_is_a_missing_capability(sim_factory, tmp_path,
                                                                        capsys):
    """The simulator, like hosted APIs, scores echoed log-probs at T = 1 without saying so:
    a T = 0.7 policy would get an error row per response; the preflight says it at once."""
    sim = sim_factory()
    cfg_dict = sim_config(sim.url)
    cfg_dict["policies"]["base"]["temperature"] = 0.7
    cfg = write_config(tmp_path / "cfg.yaml", cfg_dict)
    assert check(cfg, "--stages", "logprobs") == 2
    err = capsys.readouterr().err
    assert "needed by logprobs (policy 'base')" in err and "T=0.7" in err


def test_presets_recognise_their_urls_and_document_every_capability():
    assert set(PRESETS) == {"openai", "azure", "fireworks", "together", "vllm", "sglang",
                            "llamacpp", "ollama"}
    for preset in PRESETS.values():
        for cap in CAPABILITIES:
            assert preset.status(cap) in ("yes", "no", "unverified"), (preset.name, cap)
            assert preset.note(cap), (preset.name, cap)
    assert recognise("https://x-1.openai.azure.com/openai/v1?api-version=preview").name == "azure"
    assert recognise("https://api.together.xyz/v1").name == "together"
    assert recognise("http://localhost:8080/v1").name == "llamacpp"
    assert recognise("http://localhost:30000/v1").name == "sglang"
    assert recognise("http://10.0.0.5:8000/v1") is None and recognise(None) is None
    # an endpoint that cannot teacher-force is documented so
    assert {p.name for p in PRESETS.values() if p.status("prompt_logprobs") == "no"} == \
        {"openai", "azure", "llamacpp", "ollama"}


def test_a_failed_check_names_what_a_recognised_provider_documents(tmp_path):
    from cje.llm.stages.preflight import Outcome, Requirement, failure_message
    req = Requirement("prompt_logprobs", "ll", "m", "logprobs (policy 'base')", "completions", {})
    line = failure_message(Outcome(req, "missing", "HTTP 400: Only no echo is supported",
                                   needed_by=[req.needed_by]), "http://127.0.0.1:8080/v1")
    assert "llama.cpp server" in line and "\n" not in line and "cannot do prompt log-probs" in line


@pytest.mark.llm
@pytest.mark.slow
def test_check_provider_on_the_real_embedded_server(server, tmp_path, capsys):
    """The embedded llama.cpp server (Gemma 3 270M): completions, chat, completion and
    prompt log-probs at T = 0.7 pass; JSON mode is refused (the server says so)."""
    cfg = sim_config(server, judge="yes_no_logprob")
    cfg["providers"] = {"sim": {"kind": "local", "base_url": server, "max_concurrency": 1}}
    cfg["policies"]["base"].update(chat_template="gemma", temperature=0.7)
    cfg["policies"]["chatty"]["max_tokens"] = 4
    path = write_config(tmp_path / "cfg.yaml", cfg)
    assert check(path) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert {line.split()[1] for line in out.splitlines()[1:]} == \
        {"completions", "chat", "prompt_logprobs", "completion_logprobs"}
    cfg["judge"].update(method="structured", rubric_file=str(RUBRICS / "judge_score.txt"))
    path = write_config(tmp_path / "cfg2.yaml", cfg)
    assert check(path, "--stages", "judge") == 2
    err = capsys.readouterr().err
    assert "cannot do JSON mode" in err and "response_format" in err
