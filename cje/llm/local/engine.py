"""The embedded model's numerics: exact log-probs at temperature T, and sampling.

Why not ``llama_cpp.Llama.create_completion``: its echoed log-probs are always
at T = 1 (it ignores ``temperature``), its ``text_offset`` values skip special
tokens, and its sampler defaults (top_k 40, top_p 0.95, min_p 0.05) make a
sampled response's density differ from its teacher-forced log-prob. This
module evaluates tokens through llama.cpp's C API (``llama_decode`` with
per-token output flags, in chunks of ``n_batch`` so memory stays at
``n_batch x n_vocab`` floats) and does everything else in numpy:

* log-probs: ``log_softmax(logits / T)`` in float64, for every echoed and
  generated token (T <= 0, greedy, reports T = 1 log-probs);
* sampling: ``softmax(logits / T)``, optionally truncated by top_k / top_p /
  min_p when a request asks for it (defaults: off), drawn with
  ``numpy.random.default_rng(seed)``; T <= 0 is greedy (argmax);
* every call starts from an empty KV cache, so results never depend on what
  was evaluated before (the same request gives bit-identical log-probs).

Text offsets are character offsets into the string that was sent: special
tokens are rendered as their text (``<start_of_turn>``), and the sent text is
tokenized with ``special=True`` (BOS added by the tokenizer, not echoed).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field

import numpy as np

_ROWS_PER_BLOCK = 16  # float64 log-softmax block: 16 x 262144 x 8 B = 32 MiB


@dataclass
class TokenLogprobs:
    """Per-token results of one evaluation (parallel lists, one entry per token).

    Parameters
    ----------
    token_ids : list of int
        The tokens.
    logprobs : list of float
        Their log-probabilities.
    top : list of list of (int, float)
        The most likely alternatives of each position, (id, log-prob), best first.
    """

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] = field(default_factory=list)


@dataclass
class Generation:
    """A completion: echoed prompt tokens, generated tokens and why it stopped.

    Parameters
    ----------
    prompt : TokenLogprobs
        The echoed prompt tokens (empty without echo).
    generated : TokenLogprobs
        The generated tokens.
    finish_reason : {'stop', 'length'}
        "stop" (end-of-generation token or stop string) or "length".
    logprob_temperature : float
        The temperature the log-probs are at (1 for greedy).
    token_path : {'canonical', 'sampled'}, default='canonical'
        "sampled" when the echo used the given response token ids.
    """

    prompt: TokenLogprobs
    generated: TokenLogprobs
    finish_reason: str  # "stop" (end-of-generation token or stop string) or "length"
    logprob_temperature: float
    token_path: str = "canonical"  # "sampled" when the echo used the given response token ids


def log_softmax_rows(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise ``log_softmax(logits / T)`` in float64 (T <= 0 is treated as T = 1).

    (Reference implementation; the engine uses the cheaper :func:`scaled_lse`.)

    Parameters
    ----------
    logits : ndarray of shape (n, V)
        Raw logits.
    temperature : float
        T.

    Returns
    -------
    ndarray of shape (n, V)
        Float64 log-probabilities, each row log-sum-exp-normalised to 0.
    """
    t = float(temperature) if temperature and temperature > 0 else 1.0
    x = logits.astype(np.float64) / t
    x -= x.max(axis=1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=1, keepdims=True))
    return x


def scaled_lse(logits: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, lse)`` with ``log p(token) = x[r, token] - lse[r]``.

    ``x = logits / T`` (float32, ``(n, V)``) and its row-wise log-sum-exp (float64,
    ``(n,)``). The exponentials are float32 summed in float64 (error ~1e-6 per token, far
    below the 1e-4 tolerances used on summed log-probs); T <= 0 counts as T = 1.

    Parameters
    ----------
    logits : ndarray of shape (n, V)
        Raw logits.
    temperature : float
        T.

    Returns
    -------
    x : ndarray of float32, shape (n, V)
        The scaled logits.
    lse : ndarray of float64, shape (n,)
        Their row-wise log-sum-exp.
    """
    t = float(temperature) if temperature and temperature > 0 else 1.0
    x = np.asarray(logits, dtype=np.float32) / np.float32(t)
    m = x.max(axis=1)
    lse = m.astype(np.float64) + np.log(np.exp(x - m[:, None]).sum(axis=1, dtype=np.float64))
    return x, lse


def _top_n(x_row: np.ndarray, lse: float, n: int) -> list[tuple[int, float]]:
    """The ``n`` most likely tokens of one scaled-logit row, as (id, log-prob), best first."""
    if n <= 0:
        return []
    idx = np.argpartition(x_row, -n)[-n:]
    idx = idx[np.argsort(x_row[idx])[::-1]]
    return [(int(i), float(x_row[i]) - lse) for i in idx]


def sample_token(
    logprobs: np.ndarray,
    rng: np.random.Generator,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
) -> int:
    """Draw one token id from ``exp(logprobs)`` (a log-softmax row at the policy's T).

    ``top_k`` (0 = off), ``top_p`` (1 = off) and ``min_p`` (0 = off) truncate
    and renormalise as llama.cpp defines them; the defaults sample the full
    distribution, which is what teacher-forced log-probs assume.

    Parameters
    ----------
    logprobs : ndarray of shape (V,)
        A log-softmax row.
    rng : numpy.random.Generator
        The random source.
    top_k : int, default=0
        Keep the k most likely tokens.
    top_p : float, default=1.0
        Keep the smallest set with probability mass >= top_p.
    min_p : float, default=0.0
        Keep tokens with probability >= min_p times the largest.

    Returns
    -------
    int
        The drawn token id.
    """
    probs = np.exp(logprobs)
    keep = np.ones(probs.shape[0], dtype=bool)
    if top_k and top_k > 0 and top_k < probs.shape[0]:
        kth = np.partition(probs, -top_k)[-top_k]
        keep &= probs >= kth
    if min_p and min_p > 0:
        keep &= probs >= min_p * probs.max()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(probs)[::-1]
        cum = np.cumsum(probs[order])
        n_keep = int(np.searchsorted(cum, top_p * cum[-1]) + 1)
        mask = np.zeros_like(keep)
        mask[order[:n_keep]] = True
        keep &= mask
    p = np.where(keep, probs, 0.0)
    cdf = np.cumsum(p)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(p) - 1))


class LocalEngine:
    """One in-process llama.cpp model; not thread-safe (the server serialises calls).

    Parameters
    ----------
    model_path : str
        The .gguf file.
    n_threads : int, default=1
        Threads.
    n_ctx : int, default=4096
        The context window in tokens.
    n_batch : int, default=64
        Tokens per decode batch (memory stays at ``n_batch x n_vocab`` floats).
    """

    def __init__(self, model_path: str, n_threads: int = 1, n_ctx: int = 4096, n_batch: int = 64):
        """Load ``model_path`` (.gguf) with ``n_threads`` threads and a ``n_ctx``-token window."""
        import llama_cpp  # optional dependency (extra `local`)

        self._lib = llama_cpp
        self.llm = llama_cpp.Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            logits_all=False,
            verbose=bool(os.environ.get("CJE_LLAMA_VERBOSE")),
        )
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.n_vocab = self.llm.n_vocab()
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._ctx = self.llm.ctx
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.bos = self.llm.token_bos()
        self._piece_cache: dict[int, bytes] = {}

    def close(self) -> None:
        """Free the batch and the model."""
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        self.llm.close()

    # -- tokens -------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Tokenize ``text`` (special tokens parsed) with the model's BOS prepended.

        Parameters
        ----------
        text : str
            The text.

        Returns
        -------
        list of int
            Token ids, BOS first.
        """
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def piece(self, token: int) -> bytes:
        """The bytes token ``token`` renders to, special tokens included.

        Parameters
        ----------
        token : int
            A token id.

        Returns
        -------
        bytes
            The token's bytes.
        """
        cached = self._piece_cache.get(token)
        if cached is None:
            buf = ctypes.create_string_buffer(64)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, 64, 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._lib.llama_token_to_piece(self._vocab, token, buf, -n, 0, True)
            cached = self._piece_cache[token] = buf.raw[:n]
        return cached

    def is_end_of_generation(self, token: int) -> bool:
        """True for end-of-generation tokens (Gemma: ``<eos>``, ``<end_of_turn>``).

        Parameters
        ----------
        token : int
            A token id.

        Returns
        -------
        bool
            Whether generation stops at this token.
        """
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    # -- evaluation -----------------------------------------------------------
    def _clear(self) -> None:
        """Empty the KV cache (llama.cpp >= mid-2025 memory API; older: kv_self/kv_cache)."""
        lib = self._lib
        if hasattr(lib, "llama_memory_clear"):
            lib.llama_memory_clear(lib.llama_get_memory(self._ctx), True)
        elif hasattr(lib, "llama_kv_self_clear"):
            lib.llama_kv_self_clear(self._ctx)
        else:
            lib.llama_kv_cache_clear(self._ctx)

    def _decode(self, tokens: list[int], n_past: int, all_logits: bool) -> np.ndarray:
        """Decode ``tokens`` at positions n_past..; return logits rows (all, or the last).

        The array is a view of llama.cpp's buffer, valid until the next decode.
        """
        b = self._batch
        n = len(tokens)
        b.n_tokens = n
        for i, tok in enumerate(tokens):
            b.token[i] = tok
            b.pos[i] = n_past + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = all_logits or i == n - 1
        rc = self._lib.llama_decode(self._ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        rows = n if all_logits else 1
        ptr = self._lib.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(ptr, shape=(rows * self.n_vocab,)).reshape(rows, self.n_vocab)

    def evaluate(
        self, tokens: list[int], temperature: float, top_n: int, score_prompt: bool,
        sequential_from: int | None = None,
    ) -> tuple[TokenLogprobs, tuple[np.ndarray, float]]:
        """Evaluate ``tokens`` (BOS first) from an empty cache.

        ``tokens[:sequential_from]`` are decoded in batches of ``n_batch``, the
        rest one token per decode, exactly as generation does after its prompt:
        llama.cpp's kernels differ by batch shape (a row's logits can move by
        ~0.1 nats), so scoring a response the way it was sampled makes the
        teacher-forced log-probs equal the sampling log-probs, and makes a
        prompt's own log-probs independent of what follows it.

        Parameters
        ----------
        tokens : list of int
            The tokens, BOS first.
        temperature : float
            T of the log-probs.
        top_n : int
            Alternatives per position.
        score_prompt : bool
            Compute the log-probs of ``tokens[1:]``.
        sequential_from : int or None, default=None
            Where one-token decodes start (None: all batched).

        Returns
        -------
        prompt : TokenLogprobs
            Log-probs of tokens[1:] each given its prefix, at temperature T, with ``top_n``
            alternatives; empty when ``score_prompt`` is False.
        next : (ndarray, float)
            The next-token distribution after the last token as (scaled logits, lse).

        Raises
        ------
        ValueError
            The tokens do not fit the context window.
        """
        if len(tokens) >= self.n_ctx:
            raise ValueError(f"prompt has {len(tokens)} tokens; the context window is {self.n_ctx}")
        split = len(tokens) if sequential_from is None else max(1, min(sequential_from, len(tokens)))
        segments = [(a, min(a + self.n_batch, split)) for a in range(0, split, self.n_batch)]
        segments += [(a, a + 1) for a in range(split, len(tokens))]
        self._clear()
        out = TokenLogprobs()
        last = None
        all_tokens = np.asarray(tokens, dtype=np.int64)
        for start, end in segments:
            logits = self._decode(tokens[start:end], start, all_logits=score_prompt)
            if not score_prompt:
                last = scaled_lse(logits[-1:], temperature)
                continue
            for b0 in range(0, end - start, _ROWS_PER_BLOCK):
                x, lse = scaled_lse(logits[b0 : b0 + _ROWS_PER_BLOCK], temperature)
                pos = start + b0 + np.arange(x.shape[0])  # row r predicts tokens[pos[r] + 1]
                has_next = pos + 1 < len(tokens)
                rows = np.nonzero(has_next)[0]
                nxt = all_tokens[pos[rows] + 1]
                out.token_ids.extend(int(t) for t in nxt)
                out.logprobs.extend((x[rows, nxt].astype(np.float64) - lse[rows]).tolist())
                out.top.extend(_top_n(x[r], lse[r], top_n) for r in rows)
                if not has_next[-1]:
                    last = (x[-1:].copy(), lse[-1:])
        x_last, lse_last = last
        return out, (x_last[0], float(lse_last[0]))

    def scoring_tokens(
        self, text: str, prompt_chars: int | None = None, response_token_ids: list[int] | None = None
    ) -> tuple[list[int], int | None, str]:
        """Tokens to evaluate for ``text``: (tokens with BOS, sequential_from, token_path).

        Without ``prompt_chars``: the canonical tokenization, all batched. With it,
        the tokens are built the way sampling produced them: the chat prompt
        ``text[:prompt_chars]`` tokenized alone, then the response tokens, each
        evaluated one per decode (``sequential_from``). The response tokens are
        ``response_token_ids`` when given and they spell the text that follows the
        prompt (``token_path`` "sampled": the exact sampled path), else the
        canonical tokenization of the rest (``token_path`` "canonical").

        Parameters
        ----------
        text : str
            The full text.
        prompt_chars : int or None, default=None
            Characters of the chat prompt.
        response_token_ids : list of int or None, default=None
            The sampled response tokens.

        Returns
        -------
        tokens : list of int
            The tokens, BOS first.
        sequential_from : int or None
            Where one-token decodes start (None: all batched).
        token_path : {'canonical', 'sampled'}
            Which response tokens were used.

        Raises
        ------
        ValueError
            A response token id outside the vocabulary.
        """
        if prompt_chars is None:
            return self.tokenize(text), None, "canonical"
        head = self.tokenize(text[:prompt_chars])
        rest = text[prompt_chars:].encode("utf-8")
        if response_token_ids:
            if any(not 0 <= t < self.n_vocab for t in response_token_ids):
                raise ValueError(f"response token ids must be in [0, {self.n_vocab})")
            spelled = b"".join(self.piece(t) for t in response_token_ids)
            if rest.startswith(spelled):
                tail = rest[len(spelled):]
                tail_ids = self.llm.tokenize(tail, add_bos=False, special=True) if tail else []
                return head + list(response_token_ids) + tail_ids, len(head), "sampled"
        rest_ids = self.llm.tokenize(rest, add_bos=False, special=True) if rest else []
        return head + rest_ids, len(head), "canonical"

    def complete(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float = 1.0,
        top_n: int = 0,
        echo: bool = False,
        stop: list[str] | None = None,
        seed: int | None = None,
        top_k: int = 0,
        top_p: float = 1.0,
        min_p: float = 0.0,
        prompt_chars: int | None = None,
        response_token_ids: list[int] | None = None,
    ) -> tuple[Generation, str]:
        """Score ``prompt`` (when ``echo``) and generate up to ``max_tokens`` tokens.

        Sampling draws from ``softmax(logits / T)`` (greedy when T <= 0); log-probs
        are ``log_softmax(logits / T)``. Generation ends at an end-of-generation
        token (not included), at the first ``stop`` string (text cut there) or
        after ``max_tokens``.

        Parameters
        ----------
        prompt : str
            The text sent.
        max_tokens : int
            Longest generation.
        temperature : float, default=1.0
            T.
        top_n : int, default=0
            Alternatives per position.
        echo : bool, default=False
            Score the prompt's tokens too.
        stop : list of str or None, default=None
            Stop strings.
        seed : int or None, default=None
            Seed of ``numpy.random.default_rng``.
        top_k, top_p, min_p : optional
            Sampling truncation (:func:`sample_token`; defaults off).
        prompt_chars, response_token_ids : optional
            See :meth:`scoring_tokens`.

        Returns
        -------
        generation : Generation
            The evaluation's tokens and why it stopped.
        text : str
            The generated text.

        Raises
        ------
        ValueError
            The prompt plus ``max_tokens`` exceed the context window.
        """
        tokens, seq, token_path = self.scoring_tokens(prompt, prompt_chars, response_token_ids)
        if len(tokens) + max_tokens > self.n_ctx:
            raise ValueError(
                f"prompt ({len(tokens)} tokens) + max_tokens ({max_tokens}) exceeds the context window {self.n_ctx}"
            )
        prompt_lp, (x, lse) = self.evaluate(tokens, temperature, top_n, score_prompt=echo, sequential_from=seq)
        rng = np.random.default_rng(seed)
        gen = TokenLogprobs()
        text = b""
        finish = "length"
        stops = [s.encode("utf-8") for s in (stop or []) if s]
        for step in range(max_tokens):
            if not temperature or temperature <= 0:
                tok = int(np.argmax(x))
            else:
                tok = sample_token(x.astype(np.float64) - lse, rng, top_k, top_p, min_p)
            if self.is_end_of_generation(tok):
                finish = "stop"
                break
            gen.token_ids.append(tok)
            gen.logprobs.append(float(x[tok]) - lse)
            gen.top.append(_top_n(x, lse, top_n))
            text += self.piece(tok)
            hit = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
            if hit >= 0:
                text = text[:hit]
                finish = "stop"
                _trim_to_bytes(gen, [self.piece(t) for t in gen.token_ids], len(text))
                break
            if step + 1 < max_tokens:
                xs, lses = scaled_lse(self._decode([tok], len(tokens) + step, all_logits=False), temperature)
                x, lse = xs[0], float(lses[0])
        t_eff = float(temperature) if temperature and temperature > 0 else 1.0
        return Generation(prompt_lp, gen, finish, t_eff, token_path), text.decode("utf-8", errors="replace")


def _trim_to_bytes(gen: TokenLogprobs, pieces: list[bytes], n_bytes: int) -> None:
    """Drop generated tokens that start at or after byte ``n_bytes`` (cut by a stop string)."""
    offset = 0
    for i, p in enumerate(pieces):
        if offset >= n_bytes:
            del gen.token_ids[i:], gen.logprobs[i:], gen.top[i:]
            return
        offset += len(p)
