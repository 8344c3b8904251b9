"""The one retry policy of every API call.

Each failed attempt is classified (:func:`classify`), and :class:`RetryState`
decides, per logical call, whether to try again and how long to wait first:

| kind | examples | budget | wait before the next attempt |
|---|---|---|---|
| ``rate_limited`` | HTTP 429 | ``rate_limit_budget_s`` of total waiting per call (default 1800 s); not counted in ``max_retries`` | ``Retry-After`` when sent, capped at ``retry_after_max_s`` (default 120 s); else the backoff below |
| ``timeout`` | no answer within ``timeout_s`` | ``max_timeouts`` per call (default 2): a provider may bill each one | backoff |
| ``transient`` | 408, 409, 425, 5xx, dropped connection, malformed JSON, an answer the stage's parser rejects | ``max_retries`` per call (default 6) | backoff, at least a capped ``Retry-After`` |
| ``refused`` | 400, 413, 422 and other 4xx | not retried: the row is an error | - |
| ``fatal`` | 401, 403, 404; a 429 whose error code is ``insufficient_quota`` (OpenAI: the account's quota or credit is used up, which waiting never clears) | the stage stops at once | - |

Backoff: full jitter, ``uniform(0, min(retry_backoff_max_s, retry_backoff_s * 2**k))``
for the k-th retry of the call (Brooker, "Exponential Backoff And Jitter", AWS
Architecture Blog, 2015). A call whose 429 waiting would exceed its budget ends
with :class:`RateLimitedError` ("rate limited", never "a config problem"), which
stops the stage: every other call is waiting on the same limit, and a rerun
resumes from the request cache.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cje.errors import CJEError

RETRYABLE_STATUS = {408, 409, 425}  # plus 429 (rate_limited) and every status >= 500
FATAL_STATUS = {401, 403, 404}      # stop the whole stage at once
# Error codes (the ``error.code`` or ``error.type`` of the answer's JSON) that make a 429
# fatal, and what to do: the quota is used up and does not refill by waiting.
FATAL_429_CODES = {
    "insufficient_quota": "the account's quota or credit is used up, which waiting does not "
                          "clear; add credit or raise the limit, then rerun",
}
RATE_LIMITED, TIMEOUT, TRANSIENT, REFUSED, FATAL = (
    "rate_limited", "timeout", "transient", "refused", "fatal")


class RateLimitedError(CJEError):
    """The provider kept answering 429 for longer than the call's waiting budget.

    Parameters
    ----------
    provider : str
        The provider's name.
    waited_s : float
        Seconds waited on HTTP 429.
    budget_s : float
        The call's budget (``rate_limit_budget_s``).
    message : str
        The provider's last answer.
    """

    def __init__(self, provider: str, waited_s: float, budget_s: float, message: str):
        self.provider = provider
        super().__init__(
            f"provider '{provider}' is rate limiting: HTTP 429 for {waited_s:.0f} s, more than "
            f"providers.{provider}.rate_limit_budget_s = {budget_s:g} s (last answer: {message}); "
            "the stage stopped, finished rows are kept in the request cache: rerun later or "
            f"lower providers.{provider}.requests_per_minute / tokens_per_minute")


def classify_status(http: int, code: str | None = None) -> str:
    """Kind of an HTTP error status (table in the module docstring).

    Parameters
    ----------
    http : int
        The HTTP status.
    code : str or None, default=None
        The provider's error code (``error.code``, else ``error.type``, of the answer's JSON).

    Returns
    -------
    str
        ``rate_limited`` (429), ``fatal`` (401, 403, 404, and a 429 whose code is in
        ``FATAL_429_CODES``: a used-up quota), ``transient`` (408, 409, 425, >= 500) or
        ``refused`` (any other).

    Examples
    --------
    >>> classify_status(429), classify_status(429, "insufficient_quota")
    ('rate_limited', 'fatal')
    """
    if http == 429:
        return FATAL if code in FATAL_429_CODES else RATE_LIMITED
    if http in FATAL_STATUS:
        return FATAL
    if http in RETRYABLE_STATUS or http >= 500:
        return TRANSIENT
    return REFUSED


def fatal_hint(http: int, code: str | None) -> str | None:
    """What to do about a fatal error answer that has a known error code (None: no hint).

    Parameters
    ----------
    http : int
        The HTTP status.
    code : str or None
        The provider's error code.

    Returns
    -------
    str or None
        E.g. for a 429 ``insufficient_quota``: add credit or raise the limit, then rerun.
    """
    return FATAL_429_CODES.get(code) if http == 429 and code else None


@dataclass
class RetryState:
    """Budgets of one logical call under one provider's settings.

    ``next_wait(kind, retry_after)`` returns the seconds to wait before the next
    attempt, or None when the call must give up (``gave_up`` then says why).
    ``rate_limit_exhausted`` is set when the 429 budget ran out.

    Parameters
    ----------
    provider : ProviderConfig
        The provider's retry settings.
    retries : int, default=0
        Transient failures so far.
    timeouts : int, default=0
        Timeouts so far.
    rate_limited_s : float, default=0.0
        Seconds waited on HTTP 429 so far.
    rate_limit_exhausted : bool, default=False
        The 429 budget ran out.
    gave_up : str, default=''
        Why the call gave up.
    """

    provider: object  # ProviderConfig
    retries: int = 0          # transient failures so far
    timeouts: int = 0
    rate_limited_s: float = 0.0
    rate_limit_exhausted: bool = False
    gave_up: str = ""

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for retry number ``attempt`` (0-based).

        uniform(0, min(retry_backoff_max_s, retry_backoff_s * 2**attempt)).

        Parameters
        ----------
        attempt : int
            The retry number k.

        Returns
        -------
        float
            Seconds.

        References
        ----------
        Brooker, M. (2015). Exponential Backoff And Jitter. AWS Architecture Blog.
        """
        p = self.provider
        return random.uniform(0.0, min(p.retry_backoff_max_s, p.retry_backoff_s * (2 ** attempt)))

    def capped_retry_after(self, retry_after: float | None) -> float | None:
        """``Retry-After`` capped at ``retry_after_max_s`` (None stays None).

        Parameters
        ----------
        retry_after : float or None
            The server's ``Retry-After`` in seconds.

        Returns
        -------
        float or None
            Seconds, in [0, retry_after_max_s].
        """
        if retry_after is None:
            return None
        return min(max(0.0, retry_after), self.provider.retry_after_max_s)

    def next_wait(self, kind: str, retry_after: float | None, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up.

        Parameters
        ----------
        kind : str
            The failure's kind (:func:`classify_status`, or ``timeout``).
        retry_after : float or None
            The server's ``Retry-After``, if sent.
        attempt : int
            The attempt that failed (0-based).

        Returns
        -------
        float or None
            None when the kind is not retried or its budget is spent (``gave_up`` says why).
        """
        p = self.provider
        cap = self.capped_retry_after(retry_after)
        if kind == RATE_LIMITED:
            wait = cap if cap is not None else self.backoff(min(attempt, 16))
            if self.rate_limited_s + wait > p.rate_limit_budget_s:
                self.rate_limit_exhausted = True
                self.gave_up = (f"rate limited: HTTP 429 for {self.rate_limited_s:.0f} s "
                                f"(budget {p.rate_limit_budget_s:g} s)")
                return None
            self.rate_limited_s += wait
            return wait
        if kind == TIMEOUT:
            self.timeouts += 1
            if self.timeouts > p.max_timeouts:
                self.gave_up = f"gave up after {self.timeouts} timeouts"
                return None
            return self.backoff(self.retries + self.timeouts - 1)
        if kind == TRANSIENT:
            self.retries += 1
            if self.retries > p.max_retries:
                self.gave_up = f"gave up after {p.max_retries} retries"
                return None
            wait = self.backoff(self.retries + self.timeouts - 1)
            return max(wait, cap) if cap is not None else wait
        return None
