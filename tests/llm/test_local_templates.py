"""Chat templates: exact strings, the render_full identity, multi-turn rendering, errors."""

from __future__ import annotations

import pytest

from cje.llm.templates import TEMPLATE_NAMES, end_of_turn, render_full, render_messages, render_prompt


def test_gemma_puts_the_system_prompt_at_the_start_of_the_user_turn():
    assert render_prompt("gemma", "Be brief.", "Hi?") == (
        "<start_of_turn>user\nBe brief.\n\nHi?<end_of_turn>\n<start_of_turn>model\n")
    assert render_prompt("gemma", "", "Hi?") == "<start_of_turn>user\nHi?<end_of_turn>\n<start_of_turn>model\n"
    assert render_prompt("gemma", None, "Hi?") == render_prompt("gemma", "", "Hi?")
    assert end_of_turn("gemma") == "<end_of_turn>"


def test_llama3_and_chatml_strings():
    assert render_prompt("llama3", "S", "U") == (
        "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert render_prompt("chatml", "S", "U") == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n")
    assert end_of_turn("llama3") == "<|eot_id|>" and end_of_turn("chatml") == "<|im_end|>"
    for t in TEMPLATE_NAMES:  # no BOS text: llama.cpp's tokenizer adds BOS itself
        assert "<bos>" not in render_prompt(t, "S", "U") and "<|begin_of_text|>" not in render_prompt(t, "S", "U")


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
@pytest.mark.parametrize("system", ["", "You are terse."])
def test_render_full_is_prompt_plus_response_plus_end_of_turn(template, system):
    full = render_full(template, system, "Q", "A.")
    assert full == render_prompt(template, system, "Q") + "A." + end_of_turn(template)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "Q"}]
    assert render_messages(template, messages) == render_prompt(template, system, "Q")


def test_render_messages_multi_turn_and_text_parts():
    messages = [{"role": "system", "content": "S"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": "r"}, {"role": "user", "content": "c"}]
    assert render_messages("gemma", messages) == (
        "<start_of_turn>user\nS\n\nab<end_of_turn>\n<start_of_turn>model\nr<end_of_turn>\n"
        "<start_of_turn>user\nc<end_of_turn>\n<start_of_turn>model\n")
    with pytest.raises(ValueError, match="end with a user message"):
        render_messages("chatml", [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])
    with pytest.raises(ValueError, match=r"messages\[0\].role"):
        render_messages("gemma", [{"role": "tool", "content": "x"}])


def test_none_and_unknown_templates_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="provider applies its own chat template"):
        render_prompt("none", "", "x")
    with pytest.raises(ValueError, match="unknown chat_template 'mistral'"):
        end_of_turn("mistral")
