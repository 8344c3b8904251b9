"""Known OpenAI-compatible providers: where they answer and what they document.

A preset is documentation in code, not a config key: a provider block stays fully
explicit (``kind``, ``base_url``, ``api_key_env``; docs/llm.md, "Provider presets",
has a block to copy for each). :func:`recognise` names the preset a ``base_url``
belongs to (by host, or by the server's default port on a local host), so
``cje check-provider`` and the stage preflight can add what the provider documents to
a failed check. The preflight (:mod:`cje.llm.stages.preflight`) is the judge of what
an endpoint can do; the ``documented`` column here only explains a failure and fills
the table in docs/llm.md. Each entry says ``yes``, ``no`` or ``unverified`` with the
source it rests on; nothing here is assumed from one provider for another.

Capabilities (the names the preflight uses):

``chat``
    ``POST /chat/completions`` (generation with ``chat_template: none``; judge and
    oracle with ``method: structured`` or ``parse``).
``completions``
    ``POST /completions`` on a plain prompt (generation with a chat template).
``completion_logprobs``
    ``/completions`` with ``logprobs: k`` returning ``top_logprobs`` of the generated
    token (the ``yes_no_logprob`` judge and oracle).
``prompt_logprobs``
    ``/completions`` with ``echo: true, logprobs`` returning the log-probs of the
    prompt's own tokens (teacher forcing, the ``logprobs`` stage).
``json_mode``
    ``/chat/completions`` with a JSON-schema ``response_format`` (``method: structured``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CAPABILITIES = ("chat", "completions", "completion_logprobs", "prompt_logprobs", "json_mode")
CAPABILITY_TEXT = {
    "chat": "chat completions (POST /chat/completions)",
    "completions": "text completions (POST /completions)",
    "completion_logprobs": "completion log-probs (/completions with logprobs: top_logprobs of "
                           "the generated token)",
    "prompt_logprobs": "prompt log-probs (/completions with echo: true and logprobs: the "
                       "log-probs of the prompt's own tokens)",
    "json_mode": "JSON mode (/chat/completions with a JSON-schema response_format)",
}
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0", "::1")


@dataclass(frozen=True)
class Preset:
    """One known provider.

    Parameters
    ----------
    name : str
        The preset's name (docs/llm.md).
    label : str
        The provider as people call it.
    base_url : str
        The URL to put in ``base_url`` (placeholders in capitals).
    api_key_env : str or None
        The conventional variable name (None: keyless).
    hosts : tuple of str
        Host-name patterns (regular expressions, full match) that identify it.
    port : int or None
        The server's default port, which identifies it on a local host.
    documented : dict of str to str
        Capability -> ``"yes"``, ``"no"`` or ``"unverified"``, then ``": "`` and the note
        with its source.
    """

    name: str
    label: str
    base_url: str
    api_key_env: str | None
    hosts: tuple[str, ...] = ()
    port: int | None = None
    documented: dict = field(default_factory=dict)

    def status(self, capability: str) -> str:
        """``yes``, ``no`` or ``unverified`` for ``capability``.

        Parameters
        ----------
        capability : str
            One of :data:`CAPABILITIES`.

        Returns
        -------
        str
            The documented status.
        """
        return self.documented.get(capability, "unverified").split(":", 1)[0]

    def note(self, capability: str) -> str:
        """What the provider documents about ``capability`` (with the source).

        Parameters
        ----------
        capability : str
            One of :data:`CAPABILITIES`.

        Returns
        -------
        str
            The note ('' when there is none).
        """
        text = self.documented.get(capability, "")
        return text.split(":", 1)[1].strip() if ":" in text else ""


_OPENAI_COMPLETIONS = ("no: /v1/completions serves only the legacy models gpt-3.5-turbo-instruct, "
                       "davinci-002 and babbage-002 (OpenAI API reference, Create completion); "
                       "chat models answer 404")
PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("openai", "OpenAI", "https://api.openai.com/v1", "OPENAI_API_KEY",
           hosts=(r"api\.openai\.com",), documented={
               "chat": "yes: OpenAI API reference",
               "json_mode": "yes: structured outputs (response_format json_schema) on current "
                            "models (OpenAI API reference)",
               "completions": _OPENAI_COMPLETIONS,
               "completion_logprobs": "unverified: only the legacy completions models take "
                                      "logprobs (at most 5); not checked here",
               "prompt_logprobs": "no: gpt-3.5-turbo-instruct refuses echo with logprobs "
                                  "(\"Setting 'echo' and 'logprobs' at the same time is not "
                                  "supported for this model\", reported since 2023); teacher "
                                  "forcing is not possible"}),
    Preset("azure", "Azure OpenAI",
           "https://RESOURCE.openai.azure.com/openai/v1", "AZURE_OPENAI_API_KEY",
           hosts=(r"[a-z0-9-]+\.openai\.azure\.com", r"[a-z0-9-]+\.cognitiveservices\.azure\.com"),
           documented={
               "chat": "yes: Azure OpenAI serves OpenAI's models (a deployment name as model)",
               "json_mode": "unverified: structured outputs depend on the model and API "
                            "version of the deployment",
               "completions": "unverified: only legacy instruct deployments; not checked here",
               "completion_logprobs": "unverified: as OpenAI's legacy completions models",
               "prompt_logprobs": "no: the same models as OpenAI, which refuse echo with "
                                  "logprobs; teacher forcing is not possible"}),
    Preset("fireworks", "Fireworks AI", "https://api.fireworks.ai/inference/v1",
           "FIREWORKS_API_KEY", hosts=(r"api\.fireworks\.ai",), documented={
               "chat": "yes: Fireworks docs, Querying text models (chat completions API)",
               "completions": "yes: Fireworks docs (completions API)",
               "completion_logprobs": "unverified: logprobs on /completions not checked here",
               "prompt_logprobs": "unverified: the docs name an echo parameter; the Arena "
                                  "reference pipeline teacher-forced on Fireworks; not checked "
                                  "here",
               "json_mode": "unverified: not checked here"}),
    Preset("together", "Together AI", "https://api.together.xyz/v1", "TOGETHER_API_KEY",
           hosts=(r"api\.together\.(xyz|ai)",), documented={
               "chat": "yes: Together API reference",
               "completions": "yes: Together API reference (completions)",
               "completion_logprobs": "yes: logprobs 0-20 top tokens per step (Together "
                                      "OpenAPI spec)",
               "prompt_logprobs": "yes: echo 'can be used with logprobs to return prompt "
                                  "logprobs' (Together OpenAPI spec)",
               "json_mode": "unverified: not checked here"}),
    Preset("vllm", "vLLM (vllm serve)", "http://HOST:8000/v1", None, port=8000, documented={
               "chat": "yes: vLLM OpenAI-compatible server (Chat API; needs a chat template)",
               "completions": "yes: vLLM OpenAI-compatible server (Completions API)",
               "completion_logprobs": "yes: vLLM Completions API (logprobs)",
               "prompt_logprobs": "yes: echo with logprobs returns prompt log-probs (vLLM; "
                                  "also the prompt_logprobs extra parameter); log-probs are at "
                                  "T = 1, so only T = 1 policies can be teacher-forced",
               "json_mode": "unverified: vLLM documents structured outputs; not checked here"}),
    Preset("sglang", "SGLang (sglang.launch_server)", "http://HOST:30000/v1", None, port=30000,
           documented={
               "chat": "yes: SGLang OpenAI-compatible API",
               "completions": "yes: SGLang OpenAI-compatible API",
               "completion_logprobs": "unverified: not checked here",
               "prompt_logprobs": "unverified: older versions refused echo on /v1/completions "
                                  "(sglang issue 782; lm-evaluation-harness issue 2982), later "
                                  "ones are reported to echo prompt log-probs; the preflight "
                                  "decides",
               "json_mode": "unverified: not checked here"}),
    Preset("llamacpp", "llama.cpp server (llama-server)", "http://HOST:8080/v1", None,
           port=8080, documented={
               "chat": "yes: llama-server OpenAI-compatible API",
               "completions": "yes: llama-server /v1/completions",
               "completion_logprobs": "unverified: OAI-compatible logprobs since llama.cpp "
                                      "PR 10783; not checked here",
               "prompt_logprobs": "no: llama-server refuses echo (\"Only no echo is "
                                  "supported\"; llama.cpp issues 8942, 27174): it cannot "
                                  "teacher-force; use the embedded server (kind: local) or vLLM",
               "json_mode": "unverified: not checked here"}),
    Preset("ollama", "Ollama", "http://HOST:11434/v1", None, port=11434, documented={
               "chat": "yes: Ollama OpenAI compatibility (/v1/chat/completions)",
               "json_mode": "yes: Ollama OpenAI compatibility lists JSON mode and "
                            "response_format for /v1/chat/completions",
               "completions": "yes: Ollama OpenAI compatibility (/v1/completions)",
               "completion_logprobs": "unverified: logprobs are listed for "
                                      "/v1/chat/completions only",
               "prompt_logprobs": "no: echo is not among the supported request fields of "
                                  "/v1/completions (Ollama OpenAI compatibility): it cannot "
                                  "teacher-force"}),
)}


def recognise(base_url: str | None) -> Preset | None:
    """The preset ``base_url`` belongs to (None: not recognised).

    A hosted provider is recognised by its host name; a self-hosted server on a local
    host (localhost, 127.0.0.1) by its default port. A self-hosted server elsewhere
    (``http://gpu01:8000/v1``) is not guessed.

    Parameters
    ----------
    base_url : str or None
        The provider's ``base_url``.

    Returns
    -------
    Preset or None
        The recognised preset.

    Examples
    --------
    >>> recognise("https://api.fireworks.ai/inference/v1").name
    'fireworks'
    >>> recognise("http://127.0.0.1:11434/v1").name
    'ollama'
    >>> recognise("http://gpu01:8000/v1") is None
    True
    """
    if not base_url:
        return None
    try:
        parts = urlsplit(base_url)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None
    for preset in PRESETS.values():
        if any(re.fullmatch(h, host) for h in preset.hosts):
            return preset
    if host in _LOCAL_HOSTS and port is not None:
        return next((p for p in PRESETS.values() if p.port == port), None)
    return None
