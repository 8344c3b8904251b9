"""cje cost: totals from call logs written by the real CallLog/Accounting, warnings, and the pre-run estimate."""

from __future__ import annotations

import json

import pytest
import yaml

from cje.cli import main
from cje.llm.cost import read_costs
from cje.llm.cost_estimate import SCORER_OUTPUT_TOKENS, estimate_run
from cje.llm.client.calllog import Accounting, CallLog
from cje.llm.config import provider_config
from tests.conftest import REPO

CONFIG = {
    "providers": {
        "fireworks": {"kind": "openai", "base_url": "https://example.invalid/v1", "api_key_env": "FW_KEY",
                      "cost_per_million_input_tokens": 0.9, "cost_per_million_output_tokens": 0.9},
        "openai": {"kind": "openai", "base_url": "https://example.invalid/v1", "api_key_env": "OA_KEY"},
        "local": {"kind": "local"},
    },
}


def _stage(log: CallLog, stage: str, provider: str, model: str, calls: list[tuple[bool, int, int, int]]) -> None:
    """One stage run as LLMClient does it: an attempt line per call, then the stage_summary line."""
    acct = Accounting()
    spec = provider_config(CONFIG, provider)
    for i, (ok, pt, ct, retries) in enumerate(calls):
        log.write(stage=stage, provider=provider, model=model, prompt_id=f"p{i}", latency_s=0.1,
                  prompt_tokens=pt, completion_tokens=ct, status="ok" if ok else "error", retries=retries,
                  error=None, http_status=None, some_future_field={"x": 1})
        acct.add(stage, model, spec, ok, pt, ct, retries)
    log.write(event="stage_summary", stage=stage, totals=acct.summary())


@pytest.fixture()
def call_log(tmp_path):
    path = tmp_path / "logs" / "api_calls.log"
    log = CallLog(path)
    _stage(log, "generate:clone", "fireworks", "llama", [(True, 100, 200, 0), (True, 100, 300, 1)])
    _stage(log, "generate:clone", "fireworks", "llama", [(True, 100, 100, 0)])  # a rerun: money spent again
    _stage(log, "judge:clone", "openai", "gpt-4.1-nano", [(True, 500, 10, 0), (False, 500, 0, 6)])
    _stage(log, "oracle:base", "local", "gemma", [(True, 50, 1, 0)])
    # a judge job killed before its stage_summary, and a torn last line
    log.write(stage="judge:unhelpful", provider="openai", model="gpt-4.1-nano", prompt_id="p9", latency_s=0.2,
              prompt_tokens=400, completion_tokens=9, status="ok", retries=0, error=None, http_status=None)
    with open(path, "a") as fh:
        fh.write('{"ts": "2026-01-01", "stage": "judge:unhel')
    return path


def test_totals_per_stage_and_provider(call_log):
    report = read_costs([call_log], providers=CONFIG["providers"])
    by_stage = {r["stage"]: r for r in report.by("stage")}
    assert by_stage["generate"]["calls"] == 3 and by_stage["generate"]["retries"] == 1
    assert by_stage["generate"]["prompt_tokens"] == 300 and by_stage["generate"]["completion_tokens"] == 600
    assert by_stage["generate"]["cost_usd"] == pytest.approx(900 * 0.9 / 1e6)
    assert by_stage["judge"]["calls"] == 2 and by_stage["judge"]["errors"] == 1 and by_stage["judge"]["cost_usd"] == 0
    by_provider = {r["provider"]: r for r in report.by("provider")}
    assert set(by_provider) == {"fireworks", "openai", "local"}
    assert report.total() == pytest.approx(900 * 0.9 / 1e6)
    warnings = "\n".join(report.warnings)
    assert "provider 'openai' has no prices (providers.openai.cost_per_million_input_tokens" in warnings
    assert "its 1,010 tokens are counted at $0" in warnings
    assert "'local'" not in warnings  # the embedded model is free
    assert "stage judge:unhelpful: 1 logged attempts but no stage_summary" in warnings


def test_without_config_the_zero_cost_provider_is_still_named(call_log):
    warnings = "\n".join(read_costs([call_log.parent]).warnings)  # a folder: every *.log below it
    assert "provider 'openai': 1,010 tokens counted at $0" in warnings and "pass --config" in warnings


def test_cost_command_prints_and_writes_json(call_log, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "results" / "cost.json"
    assert main(["cost", "--log", str(call_log), "--config", str(config), "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:3] == ["stage", "calls", "errors"]
    assert "total: 6 calls" in text and "warning: provider 'openai' has no prices" in text
    payload = json.loads(out.read_text())
    assert payload["total_cost_usd"] == pytest.approx(900 * 0.9 / 1e6)
    assert {r["stage"] for r in payload["by_stage"]} == {"generate", "judge", "oracle"}


def test_estimate_of_the_arena_config_before_the_run(capsys):
    cfg = yaml.safe_load((REPO / "config" / "arena.yaml").read_text())
    est = estimate_run(cfg, prompt_tokens=100)
    calls = {r["stage"]: r["calls"] for r in est.rows}
    # 5 policies x 1000 prompts x 1 draw; every policy scores the 1000 base responses; judge every response;
    # oracle half of the logged rows and half of the fresh draws, 1 rubric sample
    assert calls == {"generate": 5000, "logprobs": 5000, "judge": 5000, "oracle": 2500}
    judge = next(r for r in est.rows if r["stage"] == "judge")
    assert judge["completion_tokens"] == 5000 * SCORER_OUTPUT_TOKENS and judge["provider"] == "openai"
    generate = next(r for r in est.rows if r["stage"] == "generate")
    assert generate["completion_tokens"] == 5000 * 1024  # upper bound: every response at max_tokens
    assert generate["cost_usd"] == pytest.approx((generate["prompt_tokens"] + generate["completion_tokens"]) * 0.9 / 1e6)
    if not (cfg["providers"]["openai"].get("cost_per_million_input_tokens")
            or cfg["providers"]["openai"].get("cost_per_million_output_tokens")):
        assert any("provider 'openai' has no prices" in w for w in est.warnings)
    assert main(["cost", "--estimate", "--config", str(REPO / "config" / "arena.yaml"), "--prompt-tokens",
                 "100"]) == 0
    assert "total: 17,500 calls" in capsys.readouterr().out


def test_estimate_needs_a_config_and_a_prompt_count(tmp_path, capsys):
    assert main(["cost", "--estimate"]) == 2
    assert "--config" in capsys.readouterr().err
    cfg = yaml.safe_load((REPO / "config" / "arena.yaml").read_text())
    cfg["prompts"]["n_samples"] = None  # hub dataset and no count: cannot guess
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["cost", "--estimate", "--config", str(path)]) == 2
    assert "prompts.n_samples" in capsys.readouterr().err
