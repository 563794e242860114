"""The ``llm`` prior: any OpenAI-compatible chat-completions endpoint as the prior over realistic records
(LLMSynthor; DESIGN §4). The ``openai`` package is the only client.

It infers dependent variable groups once, plans proposals from the guidance, and realizes each proposal as
distinct records (``records_per_call`` per call, calls in parallel). Replies are requested as strict JSON
schema (or ``json_object``, or plain text, for endpoints without it), parsed and validated; failures are
retried with exponential backoff (honouring ``Retry-After``), counted by kind, and the run continues with what
succeeded. An endpoint unreachable for longer than ``unreachable_after_s`` stops the run (``PriorError``),
keeping what was built. Every call is recorded; an on-disk cache replays identical requests.

Every reply is treated as hostile: a reply longer than ``MAX_REPLY_CHARS`` (``reply_too_large``) or nested deeper
than ``MAX_REPLY_DEPTH`` (``reply_too_deep``) is refused before it is parsed and retried like a malformed one; a
proposal's count must be a whole number of at least 1 (else ``invalid_count``) and is cut to the population
size N; a record request never exceeds its proposal's count; ``Retry-After`` is honoured up to
``MAX_RETRY_AFTER_S``; endpoint text that enters a message is cut to ``MAX_ERROR_CHARS``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import openai
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .. import defaults
from ..errors import PriorError, TokenBudgetExhausted
from ..targets.model import Project
from . import prompts
from .base import Guidance, Prior, PriorUsage, Proposal, sample_uniform_records

FAILURE_KINDS = (
    "timeout",
    "rate_limit",
    "server_error",
    "http_error",
    "connection",
    "malformed_json",
    "truncated",
    "empty",
    "refusal",
    "invalid_output",
    "reply_too_large",
    "reply_too_deep",
    "invalid_count",
)

MAX_REPLY_CHARS = 1_000_000  # characters of one reply (max_tokens = 4,096 gives ~16,000); longer: reply_too_large
MAX_REPLY_DEPTH = 64  # nesting of [ and { in a reply (ours need 5); deeper: reply_too_deep, never parsed
MAX_LISTING_BYTES = 1_000_000  # bytes of the /models listing test_connection reads at most
MAX_LISTED_MODELS = 1_000  # models of a listing test_connection checks
MAX_ERROR_CHARS = 300  # characters of endpoint text (error messages, refused replies) kept in a message
MAX_REASON_CHARS = 500  # characters of a proposal's reason kept
MAX_RETRY_AFTER_S = 60.0  # longest wait a Retry-After header may ask for
MAX_TOKENS_PER_CALL = 10**9  # token counts an endpoint reports per call are cut to this
UNREACHABLE_MIN_FAILURES = 3  # failed attempts in a row (besides unreachable_after_s) before the endpoint is given up
PROBE_MAX_TOKENS = 48  # the check before a run asks for a few words
CHECK_MIN_RETRIES = 3  # the check is retried at least this often: one failed call by chance must not end a run
DEPENDENCY_TOKENS = 400  # a dependency reply's bound (3 groups of names: ~60 tokens written, measured)
PLAN_TOKENS_PER_PROPOSAL = 200  # a plan reply's bound per proposal asked (SmolLM2: 90-130 written, measured)


class ReplyRefused(ValueError):
    """A reply refused before parsing; ``kind`` is its failure kind (``reply_too_large``, ``reply_too_deep``)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class LLMSettings(BaseModel):
    """Settings of the LLM prior. The API key is never a setting: it is read from the environment variable
    named by ``api_key_env`` (or handed to the prior directly, e.g. from Streamlit secrets) and never written.

    Attributes
    ----------
    base_url : str, e.g. ``https://api.openai.com/v1``, ``http://localhost:11434/v1`` (Ollama)
    model : str
    api_key_env : str
    temperature : float in [0, 2]
    max_tokens : int, per reply
    timeout_s : float, per request
    concurrency : int, realize calls in flight at once
    token_budget : int or None, prompt + completion tokens after which the run stops cleanly
    structured_output : {"json_schema", "json_object", "text"}
    max_retries : int, retries of one call after a failure
    backoff_s : float, first retry delay (doubled each retry, at most 30 s) unless the endpoint says Retry-After
    unreachable_after_s : float, continuous connection failures or timeouts for this long stop the run
    records_per_call : int, records one realize call writes
    distinct_records : int, distinct records the population aims at (independent of N)
    cache_dir : str or None, folder of the reply cache
    scenario : str, free text added to every prompt
    price_prompt_per_million, price_completion_per_million : float or None, USD per million tokens
    infer_dependencies : bool
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = Field(0.8, ge=0, le=2)
    max_tokens: int = Field(4096, ge=16)
    timeout_s: float = Field(60.0, gt=0)
    concurrency: int = Field(4, ge=1, le=64)
    token_budget: int | None = Field(None, ge=1)
    structured_output: Literal["json_schema", "json_object", "text"] = "json_schema"
    max_retries: int = Field(4, ge=0, le=20)
    backoff_s: float = Field(0.5, ge=0)
    unreachable_after_s: float = Field(60.0, gt=0)
    records_per_call: int = Field(20, ge=1, le=200)
    distinct_records: int = Field(1000, ge=1)
    cache_dir: str | None = None
    scenario: str = ""
    price_prompt_per_million: float | None = Field(None, ge=0)
    price_completion_per_million: float | None = Field(None, ge=0)
    infer_dependencies: bool = True

    @field_validator("cache_dir")
    @classmethod
    def _cache_is_a_folder(cls, value: str | None) -> str | None:
        """The reply cache is a folder (made when missing); an existing file there is refused before any call."""
        if value is not None and Path(value).exists() and not Path(value).is_dir():
            raise ValueError("expected a folder for the reply cache (made when missing), not an existing file")
        return value


@dataclass(frozen=True)
class LLMCall:
    """One request to the endpoint (or to the cache): what was asked, what came back, what it cost.

    ``outcome`` is ``"ok"``, ``"cached"`` or a failure kind from ``FAILURE_KINDS``.
    """

    kind: str
    model: str
    prompt: str
    reply: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    outcome: str
    attempt: int
    waited_s: float


@dataclass(frozen=True)
class EndpointCheck:
    """What the check before a run measured (:meth:`LLMClient.check_endpoint`).

    Attributes
    ----------
    seconds : float, the answer's latency (the last attempt)
    prompt_tokens, completion_tokens : int, as the endpoint reported them (0 when it reports none)
    attempts : int, requests it took (failed ones retried)
    """

    seconds: float
    prompt_tokens: int
    completion_tokens: int
    attempts: int

    @property
    def tokens_per_s(self) -> float | None:
        """Prompt and completion tokens per second of the answer (None when the endpoint reported no tokens)."""
        tokens = self.prompt_tokens + self.completion_tokens
        return tokens / max(self.seconds, 1e-3) if tokens else None

    def seconds_for(self, calls: int, tokens_per_call: int, concurrency: int) -> float | None:
        """Rough seconds of ``calls`` calls of ``tokens_per_call`` tokens each, ``concurrency`` at a time, at the
        measured rate (one call's fixed latency included); None when the rate is unknown. A rough figure: a local
        model reads a prompt faster than it writes, which the probe's mixed rate averages."""
        rate = self.tokens_per_s
        if rate is None or calls <= 0:
            return None if rate is None else 0.0
        waves = math.ceil(calls / max(concurrency, 1))
        return waves * (tokens_per_call / rate + self.seconds * 0.2)


class _WireProposal(BaseModel):
    model_config = ConfigDict(extra="ignore")
    conditions: dict[str, Any] = Field(default_factory=dict)
    count: Any = None  # checked by _read_count, never trusted as a size
    action: Literal["add", "remove"] = "add"
    reason: str = ""


def clip_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters (the cut marked with an ellipsis)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)  # a string, or an unterminated one to the end
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_NOT_SPACE = re.compile(r"\S")


def check_reply_size(text: str, max_chars: int | None = None, max_depth: int | None = None) -> None:
    """Refuse a reply too long or nested too deep for ``json.loads`` (which recurses once per level).

    One linear pass: strings are dropped (brackets inside them do not count), then the depth is the running
    sum of opening (+1) and closing (-1) brackets.

    Parameters
    ----------
    text : str
    max_chars, max_depth : int, optional
        Default ``MAX_REPLY_CHARS`` and ``MAX_REPLY_DEPTH``.

    Raises
    ------
    ReplyRefused
        ``kind`` ``"reply_too_large"`` or ``"reply_too_deep"``.
    """
    max_chars = MAX_REPLY_CHARS if max_chars is None else max_chars
    max_depth = MAX_REPLY_DEPTH if max_depth is None else max_depth
    if len(text) > max_chars:
        raise ReplyRefused("reply_too_large", f"the reply has {len(text):,} characters, more than {max_chars:,}")
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if len(brackets) <= max_depth:
        return
    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    depth = int(np.cumsum(np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)).max())
    if depth > max_depth:
        raise ReplyRefused("reply_too_deep", f"the reply is nested {depth:,} levels deep, more than {max_depth}")


def _extract_json(text: str) -> Any:
    """Parse a reply: the whole text, or the first ``{...}`` block (for plain-text endpoints); every text is
    checked with :func:`check_reply_size` before ``json.loads`` sees it.

    Raises
    ------
    ReplyRefused
        When the reply is too long or nested too deep.
    ValueError
        (``json.JSONDecodeError``) when it is not JSON.
    """
    check_reply_size(text)
    text = text.strip()
    if len(text) >= 6 and text.startswith("```") and text.endswith("```"):  # a fenced block (no regex: linear)
        text = text[3:-3].removeprefix("json").strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            block = text[start : end + 1]  # strings may pair up differently here: checked again
            check_reply_size(block)
            return json.loads(block)
        raise


def salvage_items(text: str, top_key: str) -> list:
    """The items written whole at the start of the array ``top_key`` of a reply cut short at ``max_tokens``
    (``{"records": [{...}, {...}, {"age": 3`` gives the first two); [] when there is none.

    One pass: each item is read with ``json.JSONDecoder.raw_decode`` from where the previous one ended; the first
    that does not parse ends the list. The text passed :func:`check_reply_size` before (bounded depth).
    """
    match = re.search(r'"' + re.escape(top_key) + r'"\s*:\s*\[', text)
    if match is None:
        return []
    decoder, at = json.JSONDecoder(), match.end()
    items: list = []

    def after_spaces(at: int) -> int:
        found = _NOT_SPACE.search(text, at)
        return found.start() if found is not None else len(text)

    while True:
        try:
            item, at = decoder.raw_decode(text, after_spaces(at))
        except ValueError:
            return items
        items.append(item)
        at = after_spaces(at)
        if not text.startswith(",", at):
            return items
        at += 1


def _parsed_reply(reply: str | None, failure: str | None, top_key: str) -> tuple[dict | None, str | None]:
    """The JSON object of a reply that came back as text, and the failure that stands: ``(parsed, failure)``.

    A reply that parses whole is kept even when cut at ``max_tokens`` (a small model pads with spaces); one that
    was cut mid-JSON keeps the items of ``top_key`` written whole before the cut (:func:`salvage_items`), still
    counted as ``truncated``; an object without a list under ``top_key`` is ``invalid_output``, text that is not
    JSON ``malformed_json``; a reply the content checks refuse takes their kind (:class:`ReplyRefused`)."""
    if failure not in (None, "truncated") or not reply:
        return None, failure
    try:
        parsed = _extract_json(reply)
    except ReplyRefused as exc:
        return None, exc.kind
    except (ValueError, RecursionError):  # JSONDecodeError, too many digits; depth is checked before
        if failure == "truncated":  # the items written whole before the cut are kept (no retry)
            items = salvage_items(reply, top_key)
            return ({top_key: items} if items else None), failure
        return None, "malformed_json"
    if not isinstance(parsed, dict) or not isinstance(parsed.get(top_key), list):
        return None, failure or "invalid_output"
    return parsed, None  # whole JSON: cut only in the spaces after it


def _read_count(value: Any, limit: int) -> tuple[int | None, str]:
    """A proposal's count from a reply: ``(count, "")`` with the count cut to ``limit``, or ``(None, reason)``
    when it is not a whole number of at least 1 (bool, string, list, NaN, infinite, fractional, below 1)."""
    shown = clip_text(repr(value), 40)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"count {shown} is not a number"
    if isinstance(value, float) and not math.isfinite(value):
        return None, f"count {shown} is not finite"
    if isinstance(value, float) and not value.is_integer():
        return None, f"count {shown} is not a whole number"
    if value < 1:
        return None, f"count {shown} is below 1"
    return min(int(value), limit), ""


def _token_count(value: Any) -> int:
    """A token count an endpoint reported, as a non-negative int (0 when it is not a finite number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return 0
    return min(int(value), MAX_TOKENS_PER_CALL)


def _read_completion(response) -> tuple[Any, Any, Any, Any]:
    """``(reply, refusal, finish_reason, usage)`` of a chat completion, whatever shape the endpoint gave it.

    Raises
    ------
    AttributeError, TypeError, IndexError, KeyError
        When the completion is not shaped like one (counted as ``invalid_output``).
    """
    choices = response.choices
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = getattr(choice, "message", None) if choice is not None else None
    reply = getattr(message, "content", None) if message is not None else None
    return (
        reply,
        getattr(message, "refusal", None),
        getattr(choice, "finish_reason", None),
        getattr(response, "usage", None),
    )


class LLMClient:
    """Calls to an OpenAI-compatible endpoint through the ``openai`` client: JSON replies under a schema, retries
    with backoff, failures counted by kind, every call recorded, a reply cache, a token budget, hostile-reply
    bounds (:meth:`call_json`). The LLM priors of persons (:class:`LLMPrior`) and of households
    (:mod:`synthor_core.priors.llm_households`) build on it.

    Parameters
    ----------
    settings : LLMSettings
    api_key : str, optional
        The key to send; when given (even empty) the environment is not read. The app always passes it (the
        operator's key for an allowed endpoint, or the user's own); the CLI leaves it None and the key comes
        from the variable ``settings.api_key_env``. Never stored.
    """

    def __init__(self, settings: LLMSettings, api_key: str | None = None):
        self.settings = settings
        self.usage = PriorUsage()
        self.calls: list[LLMCall] = []
        self._lock = threading.Lock()
        self._unreachable_since: float | None = None
        self._failed_in_a_row = 0  # attempts ending in a timeout or a connection failure since the last answer
        self.last_error = ""  # the endpoint's or the transport's words on the last failed attempt (cut)
        self._seen: Counter = Counter()  # identical requests so far, so that the n-th one replays the n-th reply
        self._abort = threading.Event()  # set once the endpoint is declared unreachable: every worker stops
        self._abort_reason = ""
        self._should_stop = lambda: False  # the run's stop request, polled between requests
        # the caller's key when given (the app: never an environment variable a user names); else the CLI's variable
        key = (api_key if api_key is not None else os.environ.get(settings.api_key_env)) or "not-needed"
        self._client = openai.OpenAI(base_url=settings.base_url, api_key=key, timeout=settings.timeout_s, max_retries=0)
        self._cache = Path(settings.cache_dir) if settings.cache_dir else None
        if self._cache is not None:
            self._cache.mkdir(parents=True, exist_ok=True)

    @property
    def notes(self) -> list[str]:
        """Facts for the run's warnings."""
        return [f"LLM prior: {self.settings.model} at {self.settings.base_url} ({self.settings.structured_output})"]

    def dollars(self) -> float | None:
        """Estimated cost in USD from the configured prices, or None when no price is set."""
        s = self.settings
        if s.price_prompt_per_million is None and s.price_completion_per_million is None:
            return None
        return (
            self.usage.prompt_tokens * (s.price_prompt_per_million or 0)
            + self.usage.completion_tokens * (s.price_completion_per_million or 0)
        ) / 1e6

    # ------------------------------------------------------------------------------------------ the calls
    def _response_format(self, name: str, schema: dict) -> dict | None:
        if self.settings.structured_output == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
        if self.settings.structured_output == "json_object":
            return {"type": "json_object"}
        return None

    def _request_key(self, messages, response_format) -> str:
        s = self.settings
        material = json.dumps(
            [s.base_url, s.model, messages, s.temperature, s.max_tokens, response_format],
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(material.encode("utf-8")).hexdigest()

    def _occurrence(self, kind: str, messages: list[dict], schema: dict) -> str:
        """Cache key of this request: its hash and how many identical requests came before it in this run.
        Call from the engine's thread only (in a fixed order), never from worker threads."""
        key = self._request_key(messages, self._response_format(kind, schema))
        self._seen[key] += 1
        return f"{key}-{self._seen[key]}"

    def _record(self, call: LLMCall, failure: str | None = None) -> None:
        with self._lock:
            self.calls.append(call)
            if failure:
                self.usage.failures[failure] = self.usage.failures.get(failure, 0) + 1

    def _check_budget(self) -> None:
        budget = self.settings.token_budget
        if budget is not None and self.usage.prompt_tokens + self.usage.completion_tokens >= budget:
            raise TokenBudgetExhausted(f"token budget of {budget:,} tokens spent")

    def call_json(
        self,
        kind: str,
        messages: list[dict],
        schema: dict,
        top_key: str,
        cache_key: str | None = None,
        max_tokens: int | None = None,
        use_cache: bool = True,
        retries: int | None = None,
    ) -> dict | None:
        """One logical call: cache, then up to ``1 + max_retries`` requests. Returns the parsed reply (a dict
        with ``top_key``) or None when every attempt failed. A reply cut at ``max_tokens`` keeps the items of
        ``top_key`` written whole before the cut (:func:`salvage_items`); counted as ``truncated``, it is not asked
        again (the same bound would cut it again).

        ``cache_key`` comes from :meth:`_occurrence`; computed here when not given. ``max_tokens`` (default the
        settings') bounds this reply; ``use_cache=False`` neither reads nor writes the reply cache; ``retries``
        (default the settings' ``max_retries``) bounds the retries of this call.

        Raises
        ------
        TokenBudgetExhausted
            Before a request when the budget is spent.
        PriorError
            When the endpoint has been unreachable for longer than ``unreachable_after_s``.
        """
        s = self.settings
        response_format = self._response_format(kind, schema)
        key = cache_key or self._occurrence(kind, messages, schema)
        cached = self._cache / f"{key}.json" if self._cache is not None and use_cache else None
        prompt_text = messages[-1]["content"]
        if cached is not None and cached.is_file():
            entry = json.loads(cached.read_text(encoding="utf-8"))
            with self._lock:
                self.usage.cached_calls += 1
            self._record(LLMCall(kind, s.model, prompt_text, entry["reply"], 0, 0, 0.0, "cached", 0, 0.0))
            return entry["parsed"]
        waited = 0.0
        retries = s.max_retries if retries is None else retries
        for attempt in range(retries + 1):
            if self._abort.is_set():
                raise PriorError(self._abort_reason)
            if self._should_stop():
                return None
            self._check_budget()
            started = time.monotonic()
            failure, reply, retry_after, usage = self._request(messages, max_tokens or s.max_tokens, response_format)
            latency = time.monotonic() - started
            prompt_tokens = _token_count(getattr(usage, "prompt_tokens", 0))
            completion_tokens = _token_count(getattr(usage, "completion_tokens", 0))
            unreachable_since, failed_in_a_row = self._count(prompt_tokens, completion_tokens, failure, started)
            parsed, failure = _parsed_reply(reply, failure, top_key)
            self._record(
                LLMCall(
                    kind,
                    s.model,
                    prompt_text,
                    reply,
                    prompt_tokens,
                    completion_tokens,
                    latency,
                    failure or "ok",
                    attempt,
                    waited,
                ),
                failure,
            )
            if failure is None or parsed is not None:
                if cached is not None:
                    cached.write_text(
                        json.dumps({"reply": reply, "parsed": parsed}, ensure_ascii=False), encoding="utf-8"
                    )
                return parsed
            if failure == "truncated":  # nothing whole before the cut: the same bound would cut it again
                return None
            if (
                unreachable_since is not None
                and failed_in_a_row >= UNREACHABLE_MIN_FAILURES
                and time.monotonic() - unreachable_since > s.unreachable_after_s
            ):
                self._abort_reason = (
                    f"the LLM endpoint {s.base_url} has been unreachable for "
                    f"{time.monotonic() - unreachable_since:.1f} s (last failure: {failure})"
                )
                self._abort.set()
                raise PriorError(self._abort_reason)
            if attempt < retries:
                waited += self._back_off(attempt, retry_after)
        return None

    def _request(
        self, messages: list[dict], max_tokens: int, response_format: dict | None
    ) -> tuple[str | None, str | None, str | None, Any]:
        """One request to the endpoint: ``(failure, reply, retry_after, usage)``; ``failure`` is None or the kind
        of failure (``timeout``, ``rate_limit``, ``server_error``, ``http_error``, ``connection``,
        ``invalid_output``, ``refusal``, ``reply_too_large``, ``truncated`` (cut at ``max_tokens``: it may still
        parse whole), ``empty``); ``retry_after`` is the header of a 429 reply; ``last_error`` says what went
        wrong in words."""
        s = self.settings
        failure, reply, retry_after, usage = None, None, None, None
        try:
            kwargs: dict[str, Any] = {
                "model": s.model,
                "messages": messages,
                "temperature": s.temperature,
                "max_tokens": max_tokens,
            }
            if response_format is not None:
                kwargs["response_format"] = response_format
            response = self._client.chat.completions.create(**kwargs)
        except openai.APITimeoutError:
            self.last_error = f"no answer within {s.timeout_s:g} s"
            return "timeout", None, None, None
        except openai.RateLimitError as exc:
            self.last_error = f"HTTP 429 {clip_text(str(exc))}"
            return "rate_limit", None, exc.response.headers.get("retry-after"), None
        except openai.APIStatusError as exc:
            self.last_error = f"HTTP {exc.status_code} {clip_text(str(exc))}"
            return ("server_error" if exc.status_code >= 500 else "http_error"), None, None, None
        except openai.APIConnectionError as exc:
            self.last_error = f"{type(exc.__cause__ or exc).__name__}: {clip_text(str(exc.__cause__ or exc))}"
            return "connection", None, None, None
        try:
            reply, refusal, finish_reason, usage = _read_completion(response)
        except (AttributeError, TypeError, IndexError, KeyError):
            return "invalid_output", None, None, None
        if reply is not None and not isinstance(reply, str):
            failure, reply = "invalid_output", clip_text(repr(reply))
        elif refusal:
            failure = "refusal"
        elif reply is not None and len(reply) > MAX_REPLY_CHARS:
            failure = "reply_too_large"
            reply = f"{reply[:MAX_ERROR_CHARS]}… ({len(reply):,} characters, more than {MAX_REPLY_CHARS:,})"
        elif finish_reason == "length":
            failure = "truncated"  # unless it parses whole (a small model pads with spaces): see _parsed_reply
        elif not reply or not reply.strip():
            failure = "empty"
        return failure, reply, retry_after, usage

    def _count(
        self, prompt_tokens: int, completion_tokens: int, failure: str | None, started: float
    ) -> tuple[float | None, int]:
        """Add a request to the usage and to the endpoint's unreachable streak (timeouts and refused connections in
        a row); returns when the streak began (None: no streak) and its length."""
        with self._lock:
            self.usage.calls += 1
            self.usage.prompt_tokens += prompt_tokens
            self.usage.completion_tokens += completion_tokens
            if failure in ("timeout", "connection"):
                self._unreachable_since = self._unreachable_since or started
                self._failed_in_a_row += 1
            else:
                self._unreachable_since = None
                self._failed_in_a_row = 0
            return self._unreachable_since, self._failed_in_a_row

    def _back_off(self, attempt: int, retry_after: str | None) -> float:
        """Wait before retry ``attempt + 1``: exponential back-off from ``backoff_s`` (at most 30 s), or the seconds
        a 429 reply's ``Retry-After`` asks (at most ``MAX_RETRY_AFTER_S``); cut short by a stop or an abort.
        Returns the seconds the wait was meant to last."""
        delay = min(self.settings.backoff_s * 2**attempt, 30.0)
        try:
            asked = float(retry_after) if retry_after is not None else math.nan
        except ValueError:  # e.g. an HTTP date
            asked = math.nan
        if math.isfinite(asked) and asked >= 0:
            delay = min(asked, MAX_RETRY_AFTER_S)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not self._abort.is_set() and not self._should_stop():
            self._abort.wait(min(0.1, deadline - time.monotonic()))
        return delay

    # ----------------------------------------------------------------------------------------- the prior
    def check_endpoint(self) -> EndpointCheck:
        """One cheap call before a run (issue 26): a one-word JSON answer under the run's structured output, with
        the run's timeout and retries (at least ``CHECK_MIN_RETRIES``), never cached. Its latency and tokens give
        :class:`EndpointCheck`.

        Raises
        ------
        PriorError
            Naming the endpoint, the model and the cause when every attempt failed: unreachable (connection
            refused, no answer within the timeout), HTTP errors, a refusal, prose or JSON of another shape.
        """
        s = self.settings
        before = len(self.calls)
        reply = self.call_json(
            "check",
            prompts.check_messages(),
            prompts.CHECK_SCHEMA,
            "answers",
            max_tokens=PROBE_MAX_TOKENS,
            use_cache=False,
            retries=max(s.max_retries, CHECK_MIN_RETRIES),
        )
        attempts = self.calls[before:]
        if reply is None or not attempts:
            last = attempts[-1] if attempts else None
            kind = last.outcome if last is not None else "no request"
            if kind in ("timeout", "connection", "server_error", "http_error", "rate_limit"):
                detail = self.last_error
            elif last is not None and last.reply:
                detail = f"it answered {clip_text(last.reply, 120)!r}"
            else:
                detail = "it answered nothing"
            raise PriorError(
                f"the LLM endpoint {s.base_url} (model {s.model!r}) failed the check before the run after "
                f"{len(attempts)} attempt(s): {kind} ({detail}); nothing was synthesized"
            )
        last = attempts[-1]
        return EndpointCheck(last.latency_s, last.prompt_tokens, last.completion_tokens, len(attempts))

    def test_connection(self) -> str:
        """List the endpoint's models (one cheap request); returns a one-line answer, never raises.

        At most ``MAX_LISTING_BYTES`` of the listing are read (a longer one is refused) and its first
        ``MAX_LISTED_MODELS`` models are checked; endpoint text in the answer is cut to ``MAX_ERROR_CHARS``.
        """
        url, model = self.settings.base_url, self.settings.model
        body = bytearray()
        try:
            with self._client.models.with_streaming_response.list() as response:
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_LISTING_BYTES:
                        return f"cannot use {url}: the model listing is larger than {MAX_LISTING_BYTES:,} bytes"
        except Exception as exc:  # noqa: BLE001 - an API error, or a transport error while the body streams
            return f"cannot reach {url}: {type(exc).__name__}: {clip_text(str(exc))}"
        try:
            text = body.decode("utf-8")
            check_reply_size(text, max_chars=MAX_LISTING_BYTES)
            listing = json.loads(text)
        except (ValueError, RecursionError) as exc:  # ReplyRefused, JSONDecodeError, UnicodeDecodeError
            return f"cannot use {url}: the model listing is not readable JSON ({clip_text(str(exc))})"
        data = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(data, list):
            return f'cannot use {url}: the model listing has no list of models ("data")'
        ids = [m.get("id") for m in data[:MAX_LISTED_MODELS] if isinstance(m, dict)]
        found = "found" if model in ids else "not listed"
        if len(data) > MAX_LISTED_MODELS:
            return (
                f"connected to {url}: more than {MAX_LISTED_MODELS:,} model(s) listed, the first "
                f"{MAX_LISTED_MODELS:,} checked; {model!r} {found}"
            )
        return f"connected to {url}: {len(data)} model(s); {model!r} {found}"


class LLMPrior(LLMClient):
    """The LLM prior (see the module docstring).

    Parameters
    ----------
    project : Project
    settings : LLMSettings
    mode : {"full", "paper"}
        In paper mode realization is plain code (uniform numerics in the proposal's ranges), as in the paper.
    api_key : str, optional
        The key to send; when given (even empty) the environment is not read. The app always passes it (the
        operator's key for an allowed endpoint, or the user's own); the CLI leaves it None and the key comes
        from the variable ``settings.api_key_env``. Never stored.
    """

    name = "llm"

    def __init__(self, project: Project, settings: LLMSettings, mode: str = "full", api_key: str | None = None):
        super().__init__(settings, api_key)
        self.project = project
        self.mode = mode
        self.groups: list[list[str]] | None = None
        self.distinct_records = settings.distinct_records
        self._pending: PriorError | None = None  # raised by the next plan(): a batch keeps what it got first
        self._count_limit = max(1, int(project.size))  # record requests are cut to the largest N seen so far
        self.fallback: Prior | None = None  # what a runner gives the engine to realize what this prior cannot

    def planned_calls(self, config) -> tuple[int, int]:
        """``(calls, tokens per call)`` a run with ``config`` (a SynthesisConfig) plans at most, for the estimate
        before it: dependency inference, one plan per iteration, and the realize calls of ``distinct_records``, at
        least one per proposal (none in paper mode); tokens from a realize prompt's characters (4 a token) and the
        records it asks (8 tokens a value). A rough figure, not a bound."""
        k = min(self.settings.records_per_call, self.distinct_records)
        realize = prompts.realize_messages(self.project, Proposal(conditions={}, count=k), k, self.settings.scenario)
        reading = sum(len(m["content"]) for m in realize) // 4
        writing = k * len(self.project.schema.names) * 8
        proposals = config.max_proposals or (
            defaults.PAPER_MAX_PROPOSALS if self.mode == "paper" else defaults.FULL_MAX_PROPOSALS
        )
        # each proposal's records take a call of their own: calls follow the proposals as much as the records
        per_proposal = math.ceil(defaults.MIN_RECORDS_PER_PROPOSAL / max(k, 1))
        realize_calls = max(
            math.ceil(self.distinct_records / max(k, 1)), config.max_iterations * proposals * per_proposal
        )
        if self.mode == "paper":
            realize_calls = 0
        return int(self.settings.infer_dependencies) + config.max_iterations + realize_calls, reading + writing

    def infer_dependencies(self) -> list[list[str]]:
        """Groups of dependent variables (at most 3, each of at least 2 known variables); [] when the call
        fails."""
        reply = self.call_json(
            "dependencies",
            prompts.dependency_messages(self.project),
            prompts.groups_schema(self.project.schema),
            "groups",
            max_tokens=min(self.settings.max_tokens, DEPENDENCY_TOKENS),
        )
        names = set(self.project.schema.names)
        groups = []
        for group in (reply or {}).get("groups", [])[:3]:
            if isinstance(group, list):
                kept = [v for v in group if isinstance(v, str) and v in names]
                if len(set(kept)) >= 2:
                    groups.append(list(dict.fromkeys(kept)))
        return groups

    def plan(self, guidance: Guidance, rng: np.random.Generator) -> list[Proposal]:
        """Proposals from one chat completion; wire-invalid proposals are dropped and counted.

        Only the first ``max_proposals + len(unsupported)`` proposals of the reply are read. A count is cut to
        the population size N (``guidance.population_size``); one that is not a whole number of at least 1 drops
        its proposal, counted as ``invalid_count``. A reason is cut to ``MAX_REASON_CHARS``.

        Raises
        ------
        TokenBudgetExhausted, PriorError
            When the budget ran out or the endpoint was declared unreachable (possibly during the previous
            iteration's records, which were kept).
        """
        if self._pending is not None:
            raise self._pending
        if self.groups is None:
            self.groups = self.infer_dependencies() if self.settings.infer_dependencies else []
        messages = prompts.plan_messages(self.project, guidance, self.groups, self.settings.scenario)
        most = guidance.max_proposals + len(guidance.unsupported)
        reply = self.call_json(
            "plan",
            messages,
            prompts.proposals_schema(self.project.schema, guidance.mode == "paper", most),
            "proposals",
            # a small model may write one reason for ever: the reply is cut where the proposals asked end
            max_tokens=min(self.settings.max_tokens, PLAN_TOKENS_PER_PROPOSAL * guidance.max_proposals),
        )
        limit = max(1, int(guidance.population_size))
        with self._lock:
            self._count_limit = max(self._count_limit, limit)
        proposals = []
        for item in (reply or {}).get("proposals", [])[: guidance.max_proposals + len(guidance.unsupported)]:
            try:
                wire = _WireProposal.model_validate(item)
                count, problem = _read_count(wire.count, limit)
                if count is None:
                    self._record(
                        LLMCall(
                            "plan",
                            self.settings.model,
                            "",
                            f"{problem}: {clip_text(json.dumps(item))}",
                            0,
                            0,
                            0.0,
                            "invalid_count",
                            0,
                            0.0,
                        ),
                        "invalid_count",
                    )
                    continue
                conditions = {
                    k: (
                        tuple(v)
                        if isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)
                        else v
                    )
                    for k, v in wire.conditions.items()
                    if v is not None
                }
                proposals.append(
                    Proposal(
                        conditions=conditions,
                        count=count,
                        action=wire.action,
                        reason=clip_text(wire.reason, MAX_REASON_CHARS),
                    )
                )
            except (ValidationError, TypeError, ValueError):
                self._record(
                    LLMCall(
                        "plan",
                        self.settings.model,
                        "",
                        clip_text(json.dumps(item), 500),
                        0,
                        0,
                        0.0,
                        "invalid_output",
                        0,
                        0.0,
                    ),
                    "invalid_output",
                )
        return proposals

    def _realize_chunk(self, messages: list[dict], cache_key: str, k: int, schema: dict) -> pd.DataFrame:
        """At most ``k`` records (dicts) of one realize call, as a frame."""
        try:
            reply = self.call_json("realize", messages, schema, "records", cache_key)
        except PriorError as exc:  # budget spent or endpoint gone: this chunk gets nothing, the others keep theirs
            with self._lock:
                if self._pending is None or isinstance(self._pending, TokenBudgetExhausted):
                    self._pending = exc
            reply = None
        rows = [r for r in (reply or {}).get("records", []) if isinstance(r, dict)][:k]
        return (
            pd.DataFrame(rows, columns=self.project.schema.names)
            if rows
            else pd.DataFrame(columns=self.project.schema.names)
        )

    def realize(self, proposal: Proposal, k: int, rng: np.random.Generator) -> pd.DataFrame:
        """``k`` records for one proposal (see :meth:`realize_batch`)."""
        return self.realize_batch([(proposal, k)], rng)[0]

    def realize_batch(
        self, requests: list[tuple[Proposal, int]], rng: np.random.Generator, should_stop=None
    ) -> list[pd.DataFrame]:
        """Records for many proposals: in paper mode by uniform sampling (no call); otherwise each proposal's
        ``k`` records are asked in chunks of ``records_per_call``, ``concurrency`` calls at a time. Once
        ``should_stop()`` is true, no further request starts (those in flight finish within ``timeout_s``).

        ``k`` is cut to the proposal's count and to the largest population size N seen so far (a proposal's count
        may come from the endpoint), so the calls never outnumber ``N / records_per_call`` per proposal.

        Returns one DataFrame (labels, one column per variable, unvalidated) per request, in order.
        """
        self._should_stop = should_stop or (lambda: False)
        requests = [(p, max(0, min(int(k), p.count, self._count_limit))) for p, k in requests]
        if self.mode == "paper":
            return [sample_uniform_records(self.project.schema, p, k, rng) for p, k in requests]
        size = self.settings.records_per_call
        chunks = []  # (request index, messages, cache key, records, schema), keys assigned here in a fixed order
        for i, (proposal, k) in enumerate(requests):
            for start in range(0, k, size):
                n = min(size, k - start)
                messages = prompts.realize_messages(self.project, proposal, n, self.settings.scenario)
                schema = prompts.records_schema(self.project.schema, proposal.conditions, n)
                chunks.append((i, messages, self._occurrence("realize", messages, schema), n, schema))
        self._check_budget()
        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            frames = list(pool.map(lambda c: self._realize_chunk(c[1], c[2], c[3], c[4]), chunks))
        out = []
        for i in range(len(requests)):
            parts = [f for (j, *_), f in zip(chunks, frames) if j == i and len(f)]
            out.append(
                pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=self.project.schema.names)
            )
        return out


def failure_summary(prior: LLMPrior) -> dict[str, int]:
    """Failures by kind, for reports."""
    return dict(Counter(prior.usage.failures))
