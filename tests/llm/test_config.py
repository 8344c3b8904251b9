"""Typed LLM config: defaults, and errors that name the offending key."""

from __future__ import annotations

import pytest
import yaml

from cje.errors import ConfigError
from cje.llm.config import load_config, policy_config, provider_config, scorer_config
from llm_testlib import REPO, make_config


def test_repository_configs_parse():
    for name in ("config.yaml", "arena.yaml"):
        cfg = load_config(REPO / "config" / name)
        for pol in cfg["policies"]:
            p = policy_config(cfg, pol)
            assert p.top_p == 1.0 and p.max_tokens >= 1
        for role in ("judge", "oracle"):
            scorer_config(cfg, role)


def test_unknown_key_is_named():
    cfg = make_config("http://127.0.0.1:9/v1")
    cfg["providers"]["fault"]["max_concurency"] = 3
    with pytest.raises(ConfigError, match=r"providers\.fault.*max_concurency"):
        provider_config(cfg, "fault")


def test_bad_values_are_named():
    cfg = make_config("http://127.0.0.1:9/v1")
    cfg["policies"]["base"]["chat_template"] = "alpaca"
    with pytest.raises(ConfigError, match=r"policies\.base\.chat_template"):
        policy_config(cfg, "base")
    cfg = make_config("http://127.0.0.1:9/v1")
    cfg["oracle"]["coverage"] = 1.5
    with pytest.raises(ConfigError, match=r"oracle\.coverage"):
        scorer_config(cfg, "oracle")
    cfg = make_config("http://127.0.0.1:9/v1")
    del cfg["providers"]["fault"]["base_url"]
    with pytest.raises(ConfigError, match=r"providers\.fault\.base_url"):
        provider_config(cfg, "fault")


def test_unreadable_config_file(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("providers: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
