"""How close the LLM client's prediction loop gets to the ideal wall time under bounded concurrency.

N = 1000 chat calls against the fake OpenAI-compatible server (tests/fake_openai.py, in its own process) with a
fixed 200 ms latency. For each concurrency C it prints wall time / (ceil(N / C) x 0.2 s) for
  ours:  harness's LLMClient (cache disabled), and
  plain: a plain `litellm.acompletion` + asyncio.Semaphore loop, measured in the same run.
1.0 is the ideal; targets for ours: <= 1.15 at C=16 and <= 1.5 at C=64.

    .venv/bin/python bench/llm_concurrency.py [--items 1000] [--concurrency 16 64]
"""
from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fake_openai

import harness  # noqa: E402,F401  (sets the offline environment before litellm is imported)
from harness.llm.base import ChatRequest, Pricing  # noqa: E402
from harness.llm.client import LLMClient  # noqa: E402
from tests.fake_openai import FakeOpenAIProcess  # noqa: E402

LATENCY_S = 0.2
MODEL = "openai/fake"
FREE = Pricing(input_usd_per_token=0.0, output_usd_per_token=0.0)  # the fake model has no price to look up
# A classification-sized prompt: the shared instructions and label list first, the item last.
LABELS = [f"intent_{number:02d}" for number in range(77)]
SYSTEM = "Classify the customer message into exactly one label. Labels:\n" + "\n".join(LABELS)


def make_requests(count: int, offset: int = 0) -> list[ChatRequest]:
    return [ChatRequest(key=str(offset + i), messages=[
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Message {offset + i}: my card has not arrived yet.\n"
                                    f"Answer: {LABELS[(offset + i) % len(LABELS)]}"}])
        for i in range(count)]


def ratio(wall_s: float, items: int, concurrency: int) -> float:
    return wall_s / (math.ceil(items / concurrency) * LATENCY_S)


def time_ours(url: str, items: int, concurrency: int) -> tuple[float, int]:
    """Wall seconds for `items` calls (after a warm-up that starts the workers), and the error count."""
    with LLMClient(model=MODEL, api_base=url, cache_dir=None, max_concurrency=concurrency, max_tokens=16,
                   max_retries=0, timeout_s=30.0, pricing=FREE) as client:
        list(client.run(make_requests(2 * concurrency, offset=10**6)))
        started = time.perf_counter()
        errors = sum(completion.error is not None for _, completion in client.run(make_requests(items)))
        return time.perf_counter() - started, errors


async def _plain_loop(url: str, requests: list[ChatRequest], concurrency: int) -> int:
    import litellm

    semaphore = asyncio.Semaphore(concurrency)

    async def one(request: ChatRequest) -> bool:
        async with semaphore:
            try:
                await litellm.acompletion(model=MODEL, api_base=url, api_key="no-key", messages=request.messages,
                                          max_tokens=16, temperature=0.0, num_retries=0, max_retries=0)
                return True
            except Exception:  # noqa: BLE001  (counted, like ours)
                return False

    return sum(not ok for ok in await asyncio.gather(*(one(request) for request in requests)))


def time_plain(url: str, items: int, concurrency: int) -> tuple[float, int]:
    async def measured() -> tuple[float, int]:
        await _plain_loop(url, make_requests(2 * concurrency, offset=10**6), concurrency)
        started = time.perf_counter()
        errors = await _plain_loop(url, make_requests(items), concurrency)
        return time.perf_counter() - started, errors

    return asyncio.run(measured())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()
    print(f"N={args.items}, latency {LATENCY_S * 1000:.0f} ms, {os.cpu_count()} CPUs, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    with FakeOpenAIProcess(latency_s=LATENCY_S) as server:
        for concurrency in args.concurrency:
            ours_s, ours_errors = time_ours(server.url, args.items, concurrency)
            max_in_flight = server.stats()["max_in_flight"]
            server.reset()
            plain_s, plain_errors = time_plain(server.url, args.items, concurrency)
            server.reset()
            print(f"C={concurrency} ours {ratio(ours_s, args.items, concurrency):.2f}  "
                  f"plain {ratio(plain_s, args.items, concurrency):.2f}   "
                  f"(ours {ours_s:.2f} s, {ours_errors} errors, max in flight {max_in_flight}; "
                  f"plain {plain_s:.2f} s, {plain_errors} errors)", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
