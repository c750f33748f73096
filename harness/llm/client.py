"""The LLM client: every model call of a run goes through `LLMClient.run`, into litellm's `acompletion`.

litellm spends a few milliseconds of CPU on every call, which caps one event loop at a couple of hundred calls
a second. So the calls run in worker processes (harness.llm.retry: an asyncio loop each, forked from a server
that imported litellm once), and the parent streams their results back in completion order, serves cache hits
without a call, and prices each answer."""
from __future__ import annotations

import itertools
import logging
import math
import os
import weakref
from dataclasses import fields, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from harness.errors import HarnessError
from harness.llm.base import ChatRequest, Completion, Pricing
from harness.llm.cache import ResponseCache, cache_key
from harness.llm.retry import CallSettings, serve_worker

log = logging.getLogger(__name__)

PRICING_MODES = ("per_token", "per_second")
PARENT_PID_ENV = "HARNESS_LLM_PARENT_PID"  # the process the forkserver must not outlive (harness.llm.forkserver)
LOCAL_SERVER_KEY = "no-key"  # OpenAI-compatible local servers want some key and accept any
# Calls in flight per worker process. litellm's ~4-5 ms of CPU per call already queues calls in one event loop
# at 16 in flight (200 ms calls, 2 cores: wall/ideal 1.16-1.28 with one worker, 1.10 with two).
CONCURRENCY_PER_WORKER = 8
_QUEUED_PER_SLOT = 2  # jobs handed to a worker per concurrency slot, so it never waits for the parent
_unpriced_warned: set[str] = set()


class LLMClient:
    """Chat calls with bounded concurrency, retries, a per-call timeout, a response cache and prices.

    `__init__` only stores; worker processes start on the first `run` and stop on `close`."""

    def __init__(self, *, model: str, api_base: str | None = None, api_key_env: str | None = None,
                 api_key_file: str | None = None, cache_identity: str | None = None, temperature: float = 0.0,
                 max_tokens: int = 16, max_concurrency: int = 4, timeout_s: float = 60.0, max_retries: int = 4,
                 backoff_s: float = 1.0, cache_dir: str | None = ".cache/llm",
                 pricing: Pricing | Mapping[str, Any] = Pricing(), workers: int | None = None) -> None:
        self.model = model
        self.api_base = api_base
        self.api_key_env = api_key_env
        self.api_key_file = api_key_file
        self.cache_identity = cache_identity
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.cache_dir = cache_dir
        self.pricing = pricing
        self.workers = workers  # None: one per CONCURRENCY_PER_WORKER, up to the cores
        self._pool: _WorkerPool | None = None
        self._cache: ResponseCache | None = None
        self._checked_pricing: Pricing | None = None
        self._token_prices: tuple[float, float] | None = None
        self._tags = itertools.count()
        self._running = False

    def cache_key(self, request: ChatRequest) -> str:
        return cache_key(identity=self.identity, messages=request.messages, temperature=self.temperature,
                         max_tokens=self.max_tokens, extra=request.extra, sample=request.sample)

    @property
    def identity(self) -> str:
        """What names the model in the response cache: `cache_identity` when set (local servers set the model
        file's hash, their port changing every run), else the model with its endpoint, so two servers that
        serve the same model name never share answers."""
        if self.cache_identity:
            return self.cache_identity
        return f"{self.model}@{self.api_base}" if self.api_base else self.model

    def run(self, requests: Iterable[ChatRequest]) -> Iterator[tuple[ChatRequest, Completion]]:
        """Yields (request, completion) as each finishes (completion order), with at most max_concurrency
        calls in flight. Never raises for one failed call: a failure is a Completion with `error` set.
        Configuration problems (a missing API key, an unknown pricing mode) raise HarnessError here, before
        any call."""
        self._pricing()
        api_key = self._api_key()
        if self._running:
            raise RuntimeError("LLMClient.run: the previous run is still open; exhaust or close it first")
        return self._stream(iter(requests), api_key)

    def close(self) -> None:
        if self._pool is not None:
            self._pool_finalizer()
            self._pool = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def __enter__(self) -> "LLMClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cost_usd(self, completion: Completion) -> float:
        """The steady-state price of one answered call under this client's pricing."""
        pricing = self._pricing()
        if pricing.mode == "per_second":
            return completion.latency_ms / 1000.0 * pricing.usd_per_hour / 3600.0
        input_usd, output_usd = self._prices_per_token(pricing)
        return completion.prompt_tokens * input_usd + completion.completion_tokens * output_usd

    def _stream(self, source: Iterator[ChatRequest], api_key: str | None) -> Iterator[tuple[ChatRequest, Completion]]:
        cache = self._open_cache()
        pool: _WorkerPool | None = None
        pending: dict[int, tuple[ChatRequest, str | None]] = {}
        self._running = True
        try:
            exhausted = False
            while True:
                while not exhausted and (pool is None or pool.has_room()):
                    request = next(source, None)
                    if request is None:
                        exhausted = True
                        break
                    key = self.cache_key(request) if cache else None
                    hit = cache.get(key) if cache else None
                    if hit is not None:
                        yield request, hit
                        continue
                    if pool is None:  # started at the first miss: a fully cached rerun starts no process
                        pool = self._start_pool()
                        pool.start_run(api_key)
                    tag = next(self._tags)
                    pool.submit(tag, request)
                    pending[tag] = (request, key)
                if not pending:
                    return
                for tag, completion in pool.receive():
                    request, key = pending.pop(tag)
                    if completion.error is None:
                        completion.cost_usd = completion.spent_usd = self.cost_usd(completion)
                        if cache:
                            cache.put(key, completion)
                    yield request, completion
        finally:
            self._running = False
            if pending:  # the consumer stopped early: stop the calls nobody will read
                pool.cancel()

    def _pricing(self) -> Pricing:
        """`pricing` as a checked Pricing (a config gives a mapping), converted once."""
        if self._checked_pricing is not None:
            return self._checked_pricing
        pricing = self.pricing
        if not isinstance(pricing, Pricing):
            known = {f.name for f in fields(Pricing)}
            unknown = sorted(set(pricing) - known)
            if unknown:
                raise HarnessError(f"no pricing key '{unknown[0]}' for model {self.model}; "
                                   f"known: {', '.join(sorted(known))}")
            pricing = Pricing(**dict(pricing))
        if pricing.mode not in PRICING_MODES:
            raise HarnessError(f"no pricing mode '{pricing.mode}' for model {self.model}; "
                               f"known: {', '.join(PRICING_MODES)}")
        self._checked_pricing = pricing
        return pricing

    def _prices_per_token(self, pricing: Pricing) -> tuple[float, float]:
        """Overrides first; a missing price from litellm's offline price map, resolved once."""
        if self._token_prices is None:
            input_usd, output_usd = pricing.input_usd_per_token, pricing.output_usd_per_token
            if input_usd is None or output_usd is None:
                mapped_input, mapped_output = mapped_prices_per_token(self.model)
                input_usd = mapped_input if input_usd is None else input_usd
                output_usd = mapped_output if output_usd is None else output_usd
            self._token_prices = (float(input_usd), float(output_usd))
        return self._token_prices

    def _api_key(self) -> str | None:
        """The key, read now (never stored in config). None lets litellm use its provider's own variable."""
        if self.api_key_env and self.api_key_file:
            raise HarnessError(f"model {self.model}: set one of api_key_env and api_key_file, not both")
        if self.api_key_env:
            value = os.environ.get(self.api_key_env, "").strip()
            if not value:
                raise HarnessError(f"environment variable {self.api_key_env} (api_key_env of model {self.model}) "
                                   "is not set; export it with the API key")
            return value
        if self.api_key_file:
            path = Path(self.api_key_file).expanduser()
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise HarnessError(f"{path}: cannot read the API key file of model {self.model}: "
                                   f"{exc.strerror}") from None
            if not value:
                raise HarnessError(f"{path}: the API key file of model {self.model} is empty")
            return value
        return LOCAL_SERVER_KEY if self.api_base else None

    def _open_cache(self) -> ResponseCache | None:
        if self._cache is None and self.cache_dir is not None:
            self._cache = ResponseCache(self.cache_dir)
        return self._cache

    def _start_pool(self) -> "_WorkerPool":
        if self._pool is None:
            concurrency = max(1, int(self.max_concurrency))
            workers = self.workers or min(os.cpu_count() or 1, math.ceil(concurrency / CONCURRENCY_PER_WORKER))
            workers = max(1, min(int(workers), concurrency))
            base = CallSettings(model=self.model, api_base=self.api_base, temperature=self.temperature,
                                max_tokens=self.max_tokens, timeout_s=self.timeout_s, max_retries=self.max_retries,
                                backoff_s=self.backoff_s, concurrency=1)
            # Split the concurrency bound across workers so their sum never exceeds it.
            shares = [concurrency // workers + (i < concurrency % workers) for i in range(workers)]
            self._pool = _WorkerPool([replace(base, concurrency=share) for share in shares])
            # A client dropped without close() still stops its workers when it is collected.
            self._pool_finalizer = weakref.finalize(self, self._pool.close)
        return self._pool


def mapped_prices_per_token(model: str) -> tuple[float, float]:
    """(input, output) USD per token from litellm's offline price map; (0, 0) and a one-time warning for a
    model the map does not know."""
    import litellm

    try:
        info = litellm.get_model_info(model=model)
    except Exception:  # noqa: BLE001  (litellm raises several types for "not mapped")
        if model not in _unpriced_warned:
            _unpriced_warned.add(model)
            log.warning("model %s is not in litellm's price map and has no price override: its calls are "
                        "priced at 0 USD; set input_usd_per_token and output_usd_per_token in its pricing",
                        model)
        return 0.0, 0.0
    return float(info.get("input_cost_per_token") or 0.0), float(info.get("output_cost_per_token") or 0.0)


class _WorkerPool:
    """Worker processes and the parent's side of their pipes. Each result is (tag, Completion)."""

    def __init__(self, settings: list[CallSettings]) -> None:
        context = _process_context()
        self.settings = settings
        self.conns: list[Connection] = []
        self.processes = []
        for number, one in enumerate(settings):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=serve_worker, args=(child_end, one), daemon=True,
                                      name=f"harness-llm-{number}")
            process.start()
            child_end.close()
            self.conns.append(parent_end)
            self.processes.append(process)
        self._owner: dict[int, int] = {}  # tag -> worker, for jobs not yet answered
        self._load = [0] * len(settings)

    def has_room(self) -> bool:
        return any(load < _QUEUED_PER_SLOT * s.concurrency for load, s in zip(self._load, self.settings))

    def submit(self, tag: int, request: ChatRequest) -> None:
        worker = min(range(len(self._load)), key=lambda i: self._load[i] / self.settings[i].concurrency)
        self.conns[worker].send(("job", tag, request))
        self._owner[tag] = worker
        self._load[worker] += 1

    def receive(self) -> list[tuple[int, Completion]]:
        """Blocks until at least one worker has answered; returns the answers of the current jobs."""
        answered = []
        for conn in wait(self.conns):
            while conn.poll():
                try:
                    tag, completion = conn.recv()
                except EOFError:
                    process = self.processes[self.conns.index(conn)]
                    process.join(1)
                    raise RuntimeError(f"LLM worker process {process.name} exited "
                                       f"(code {process.exitcode})") from None
                worker = self._owner.pop(tag, None)
                if worker is not None:  # else: the answer to a job of an abandoned earlier run
                    self._load[worker] -= 1
                    answered.append((tag, completion))
        return answered

    def start_run(self, api_key: str | None) -> None:
        for conn in self.conns:
            conn.send(("key", api_key))

    def cancel(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("cancel",))
            except OSError:
                pass  # a worker that died has nothing to cancel (and its death is what is being reported)
        self._owner.clear()
        self._load = [0] * len(self._load)

    def close(self) -> None:
        for conn, process in zip(self.conns, self.processes):
            try:
                conn.send(None)
            except OSError:
                pass  # already gone
            process.join(5)
            if process.is_alive():
                process.terminate()
                process.join(5)
            conn.close()


def _process_context():
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that imported litellm once, instead of paying ~2.5 s each; litellm's
        # proxy types load lazily on its first call (~0.7 s), so they are imported there too. The first import
        # ties the server's life to this process's (named here, so the server can tell it from its own).
        context.set_forkserver_preload(["harness.llm.forkserver", "litellm", "litellm.proxy._types",
                                        "harness.llm.retry"])
        os.environ[PARENT_PID_ENV] = str(os.getpid())
        return context
    return multiprocessing.get_context("spawn")
