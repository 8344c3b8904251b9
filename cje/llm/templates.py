"""Chat templates: the exact text a policy's response continues.

Teacher-forced log-probs are only the log-density of the sampling distribution
when the scored string is the *same* string the policy was sampled from. Both
``cje generate`` (local completions, ``stop=[end_of_turn(t)]``) and
``cje logprobs`` therefore render chats with the functions below.

Templates
---------
``gemma``
    ``<start_of_turn>user\\n{system}\\n\\n{user}<end_of_turn>\\n<start_of_turn>model\\n``.
    Gemma has no system role: the system prompt opens the user turn, separated
    by a blank line (as in Google's own chat template). End of turn: ``<end_of_turn>``.
``llama3``
    ``<|start_header_id|>system<|end_header_id|>\\n\\n{system}<|eot_id|>``
    ``<|start_header_id|>user<|end_header_id|>\\n\\n{user}<|eot_id|>``
    ``<|start_header_id|>assistant<|end_header_id|>\\n\\n``. End of turn: ``<|eot_id|>``.
``chatml``
    ``<|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n{user}<|im_end|>\\n``
    ``<|im_start|>assistant\\n``. End of turn: ``<|im_end|>``.

No template writes the beginning-of-sequence token (``<bos>``,
``<|begin_of_text|>``): llama.cpp's tokenizer adds it itself, and writing it
too would score a doubled BOS. An empty or ``None`` system prompt omits the
system part. ``none`` means the provider applies its own template (chat
completions endpoint); such a policy cannot be rendered here.
"""

from __future__ import annotations

TEMPLATE_NAMES = ("gemma", "llama3", "chatml")
"""Templates this module renders (``none`` is valid in config but not renderable)."""

_END_OF_TURN = {
    "gemma": "<end_of_turn>",
    "llama3": "<|eot_id|>",
    "chatml": "<|im_end|>",
}


def _check(template: str) -> str:
    if template == "none":
        raise ValueError(
            "chat_template 'none': the provider applies its own chat template, so the "
            "prompt text cannot be rendered locally (use chat completions for generation; "
            "teacher-forced log-probs need a renderable template: gemma, llama3 or chatml)"
        )
    if template not in _END_OF_TURN:
        raise ValueError(
            f"unknown chat_template {template!r}: expected one of {', '.join(TEMPLATE_NAMES)} or none"
        )
    return template


def end_of_turn(template: str) -> str:
    """Return the end-of-turn marker of ``template`` (e.g. ``<end_of_turn>`` for gemma).

    Use it as the stop string when generating and as the suffix when scoring.

    Parameters
    ----------
    template : str
        A template name (``gemma``, ``llama3``, ``chatml``).

    Returns
    -------
    str
        The marker.

    Raises
    ------
    ValueError
        For ``none`` or an unknown template name.
    """
    return _END_OF_TURN[_check(template)]


def render_prompt(template: str, system_prompt: str | None, user_prompt: str) -> str:
    """Render a one-turn chat up to where the assistant's response starts.

    Parameters
    ----------
    template : str
        Template name (``gemma``/``llama3``/``chatml``).
    system_prompt : str or None
        ``None`` or ``""`` = no system prompt.
    user_prompt : str
        The user's message.

    Returns
    -------
    str
        The exact string the policy's response continues (no BOS token; see module doc).

    Raises
    ------
    ValueError
        For ``none`` or an unknown template name.
    """
    _check(template)
    system = system_prompt or ""
    if template == "gemma":
        user = f"{system}\n\n{user_prompt}" if system else user_prompt
        return f"<start_of_turn>user\n{user}<end_of_turn>\n<start_of_turn>model\n"
    if template == "llama3":
        head = "<|start_header_id|>{}<|end_header_id|>\n\n"
        out = f"{head.format('system')}{system}<|eot_id|>" if system else ""
        return out + f"{head.format('user')}{user_prompt}<|eot_id|>{head.format('assistant')}"
    # chatml
    out = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    return out + f"<|im_start|>user\n{user_prompt}<|im_end|>\n<|im_start|>assistant\n"


def render_full(template: str, system_prompt: str | None, user_prompt: str, response: str) -> str:
    """Render prompt + response + end-of-turn: the string whose response span is scored.

    ``render_full(t, s, u, r) == render_prompt(t, s, u) + r + end_of_turn(t)``.
    The end-of-turn marker is part of the scored span: the sampled response
    stopped there, so log P(response) includes P(end_of_turn | ...).

    Parameters
    ----------
    template : str
        Template name.
    system_prompt : str or None
        ``None`` or ``""`` = no system prompt.
    user_prompt : str
        The user's message.
    response : str
        The policy's response.

    Returns
    -------
    str
        The full string.

    Raises
    ------
    ValueError
        For ``none`` or an unknown template name.
    """
    return render_prompt(template, system_prompt, user_prompt) + response + end_of_turn(template)


def _content_text(message: dict, index: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise ValueError(f"messages[{index}].content must be a string or a list of text parts")


def render_messages(template: str, messages: list[dict]) -> str:
    """Render an OpenAI-style ``messages`` list, ending where the assistant's turn starts.

    Roles: ``system`` (gemma: prepended to the first user turn, blank-line
    separated; ``developer`` is taken as ``system``), ``user``, ``assistant``. A single
    system + user pair renders exactly as :func:`render_prompt`.

    Parameters
    ----------
    template : str
        Template name.
    messages : list of dict
        ``{"role", "content"}`` messages; content is a string or a list of text parts.

    Returns
    -------
    str
        The rendered chat, ending where the assistant's turn starts.

    Raises
    ------
    ValueError
        Naming the bad message: an unknown role, content that is not text, a gemma system
        message after a turn, or a list that does not end with a user message.
    """
    _check(template)
    system_parts: list[str] = []
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant"):
            raise ValueError(f"messages[{i}].role must be system, user or assistant, got {role!r}")
        text = _content_text(message, i)
        if role in ("system", "developer"):
            if turns and template == "gemma":
                raise ValueError(f"messages[{i}]: gemma has no system role; put system messages first")
            system_parts.append(text)
        else:
            turns.append((role, text))
    system = "\n\n".join(system_parts)
    if not turns or turns[-1][0] != "user":
        raise ValueError("messages must end with a user message")
    eot = end_of_turn(template)
    out = ""
    if template == "gemma":
        for k, (role, text) in enumerate(turns):
            if k == 0 and system and role == "user":
                text = f"{system}\n\n{text}"
            out += f"<start_of_turn>{'model' if role == 'assistant' else 'user'}\n{text}{eot}\n"
        return out + "<start_of_turn>model\n"
    if template == "llama3":
        head = "<|start_header_id|>{}<|end_header_id|>\n\n"
        out = f"{head.format('system')}{system}{eot}" if system else ""
        for role, text in turns:
            out += f"{head.format(role)}{text}{eot}"
        return out + head.format("assistant")
    out = f"<|im_start|>system\n{system}{eot}\n" if system else ""
    for role, text in turns:
        out += f"<|im_start|>{role}\n{text}{eot}\n"
    return out + "<|im_start|>assistant\n"
