"""What runs in an LLM worker process: one chat call through litellm with a per-attempt timeout and retries
(exponential backoff with jitter on 429, 5xx, timeouts and connection errors, honouring `Retry-After`; any
other error is final), and the loop that serves the jobs the parent sends (harness.llm.client).

litellm is told not to retry on its own (num_retries=0, max_retries=0), so every attempt is counted here and
a server's Retry-After is what decides the wait."""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import signal
import time
import warnings
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from multiprocessing.connection import Connection
from typing import Any, Awaitable, Callable, NoReturn

from harness.llm.base import ChatRequest, Completion
from harness.llm.local import die_with_parent

MAX_BACKOFF_S = 60.0  # the exponential backoff stops growing here
MAX_RETRY_AFTER_S = 300.0  # a Retry-After beyond this is treated as this, so a broken header cannot stall a run
ERROR_MAX_CHARS = 500


@dataclass(frozen=True)
class CallSettings:
    """Everything a worker needs to make calls, except the API key (sent with each run)."""

    model: str
    api_base: str | None
    temperature: float
    max_tokens: int
    timeout_s: float
    max_retries: int
    backoff_s: float
    concurrency: int

    def backoff_delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        """The wait before attempt `attempt + 1`. "Equal jitter": half the exponential step plus a random half,
        so clients that failed together do not retry together."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S)
        step_s = min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
        return step_s / 2 + random.uniform(0.0, step_s / 2)


def retry_after_s(exc: BaseException) -> float | None:
    """The server's requested wait, from `retry-after-ms` or `Retry-After` (seconds or an HTTP date).
    litellm keeps the provider's headers on its exceptions as `litellm_response_headers`."""
    headers = getattr(exc, "litellm_response_headers", None)
    if not headers:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000.0
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def is_retryable(exc: BaseException) -> bool:
    """Timeouts, connection failures, 408, 429 and 5xx are worth another try; other 4xx (a 422) are final."""
    if isinstance(exc, OSError):  # includes TimeoutError (ours) and ConnectionError
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in (408, 429) or status >= 500)


def describe_error(exc: BaseException, timeout_s: float, api_key: str) -> str:
    if isinstance(exc, TimeoutError):
        message = f"timed out: no answer within {timeout_s:g} s"
    else:
        message = f"{type(exc).__name__}: {exc}"
    if api_key:
        message = message.replace(api_key, "***")
    return message[:ERROR_MAX_CHARS]


async def complete(acompletion: Callable[..., Awaitable[Any]], request: ChatRequest, settings: CallSettings,
                   params: dict[str, Any]) -> Completion:
    """One request, retried as the settings say. `params` are the litellm arguments shared by every call
    (model, api_base, api_key, sampling). Never raises for a failed call: the Completion carries the error."""
    kwargs = {**params, "messages": request.messages, **request.extra}
    attempt = 0
    while True:
        attempt += 1
        started = time.perf_counter()
        try:
            async with asyncio.timeout(settings.timeout_s):
                response = await acompletion(**kwargs)
            return _from_response(response, (time.perf_counter() - started) * 1000.0, attempt)
        except Exception as exc:  # noqa: BLE001  (one failed call must become a record, whatever it was)
            if attempt <= settings.max_retries and is_retryable(exc):
                await asyncio.sleep(settings.backoff_delay_s(attempt, retry_after_s(exc)))
                continue
            error = describe_error(exc, settings.timeout_s, params.get("api_key") or "")
            return Completion(attempts=attempt, error=f"after {attempt} attempt(s): {error}")


def _from_response(response: Any, latency_ms: float, attempts: int) -> Completion:
    usage = getattr(response, "usage", None)
    return Completion(text=response.choices[0].message.content or "",
                      prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                      completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                      latency_ms=latency_ms, attempts=attempts, logprobs=_token_logprobs(response.choices[0]))


def _token_logprobs(choice: Any) -> list | None:
    """The OpenAI `logprobs.content` list as plain data (it crosses a pipe and goes into the cache)."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return [[t.token, float(t.logprob), {a.token: float(a.logprob) for a in (t.top_logprobs or [])}]
            for t in content]


def serve_worker(conn: Connection, settings: CallSettings) -> None:
    """A worker process: runs the jobs its pipe brings, `settings.concurrency` at a time."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tells workers to stop
    # The forkserver it forks from dies with the run (harness.llm.forkserver), and this worker with the forkserver;
    # the pipe to the run closing (below) is the quicker sign.
    die_with_parent(signal.SIGKILL)
    asyncio.run(_Worker(conn, settings).serve())


def _parent_gone() -> NoReturn:
    """The run's process is gone (killed outright): no one will read another answer and a worker keeps nothing
    worth saving, so it leaves at once and quietly, not seconds later with a BrokenPipeError traceback in the
    run's log."""
    os._exit(0)


class _Worker:
    def __init__(self, conn: Connection, settings: CallSettings) -> None:
        self.conn = conn
        self.settings = settings
        self.params: dict[str, Any] = {}
        self.queued: collections.deque = collections.deque()
        self.running: set[asyncio.Task] = set()

    async def serve(self) -> None:
        import litellm

        litellm.suppress_debug_info = True  # otherwise every failed call prints a help banner
        # Cancelling a call (the consumer stopped early) can leave one of litellm's inner coroutines unstarted;
        # the warning it raises says nothing about our calls.
        warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
        _skip_litellm_pricing(litellm, self.settings.model)
        self.acompletion = litellm.acompletion
        await _warm_up(litellm, self.settings.model)
        loop = asyncio.get_running_loop()
        self.stopped = loop.create_future()
        loop.add_reader(self.conn.fileno(), self._on_readable)
        await self.stopped
        loop.remove_reader(self.conn.fileno())
        for task in self.running:
            task.cancel()

    def _on_readable(self) -> None:
        try:
            while self.conn.poll():
                self._handle(self.conn.recv())
        except (EOFError, OSError):  # the parent closes its end only by dying: a clean stop sends None first
            _parent_gone()
        self._start_queued()

    def _handle(self, message: tuple | None) -> None:
        if message is None:
            if not self.stopped.done():
                self.stopped.set_result(None)
        elif message[0] == "job":
            self.queued.append(message[1:])
        elif message[0] == "key":
            self.params = _call_params(self.settings, message[1])
        elif message[0] == "cancel":
            self.queued.clear()
            for task in self.running:
                task.cancel()

    def _start_queued(self) -> None:
        while self.queued and len(self.running) < self.settings.concurrency and not self.stopped.done():
            tag, request = self.queued.popleft()
            task = asyncio.ensure_future(complete(self.acompletion, request, self.settings, self.params))
            self.running.add(task)
            task.add_done_callback(lambda done, tag=tag: self._finished(tag, done))

    def _finished(self, tag: int, task: asyncio.Task) -> None:
        self.running.discard(task)
        if not task.cancelled():
            # `complete` records failures itself; this guard only keeps a bug from leaving the parent waiting.
            bug = task.exception()
            try:
                self.conn.send((tag, task.result() if bug is None else Completion(error=f"internal error: {bug!r}")))
            except OSError:  # BrokenPipeError: the parent died while this call was in flight
                _parent_gone()
        self._start_queued()


def _skip_litellm_pricing(litellm, model: str) -> None:
    """litellm prices every response for its own logs, and for a model missing from its map (any local model)
    that means a fuzzy search costing ~0.5 ms of CPU per call. The parent prices calls itself, so in this
    worker an unknown model gets a zero entry."""
    try:
        litellm.get_model_info(model=model)
    except Exception:  # noqa: BLE001  (litellm raises several types for "not mapped")
        litellm_log = logging.getLogger("LiteLLM")
        level = litellm_log.level
        litellm_log.setLevel(logging.ERROR)  # its warning about cache-token prices concerns litellm's own logs
        try:
            litellm.register_model({model: {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                                            "mode": "chat"}})
        finally:
            litellm_log.setLevel(level)


async def _warm_up(litellm, model: str) -> None:
    """A call answered by litellm itself (mock_response), so the first measured call does not carry litellm's
    one-time set-up (lazy imports, ~0.1-1 s) in its latency."""
    try:
        await litellm.acompletion(model=model, messages=[{"role": "user", "content": "warm-up"}],
                                  mock_response="ok", max_tokens=1)
    except Exception:  # noqa: BLE001  (a failed warm-up only means the first call pays the set-up)
        pass


def _call_params(settings: CallSettings, api_key: str | None) -> dict[str, Any]:
    """The litellm arguments every call shares. litellm's own retries are off: ours count attempts and
    honour Retry-After."""
    params = {"model": settings.model, "temperature": settings.temperature, "max_tokens": settings.max_tokens,
              "num_retries": 0, "max_retries": 0}
    if settings.api_base:
        params["api_base"] = settings.api_base
    if api_key:
        params["api_key"] = api_key
    return params
