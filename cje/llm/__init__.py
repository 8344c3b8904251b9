"""LLM pipeline stages: prompts, generate, judge, oracle, merge, dataset (+ log-probs).

Modules: ``config`` (typed provider/policy/scorer config), ``client`` (the async
OpenAI-compatible client: limits, retries), ``calllog`` (call log, cost accounting), ``cache``
(side-cache resume + atomic outputs), ``progress``, ``prompts``, ``generate``,
``judge`` (judge and oracle scoring), ``dataset`` (analysis inputs, shard merge),
``commands`` (the CLI). See docs/llm.md. The embedded model server lives in
``local_server`` and is imported lazily, so this package works without llama-cpp.
"""
