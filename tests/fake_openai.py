"""A fake OpenAI-compatible chat server for tests and benchmarks (never used by product code).

It serves `GET /v1/models` and `POST /v1/chat/completions` on 127.0.0.1 (a free port), answers with proper
`usage`, and injects what real servers do to clients: a fixed latency, 429s with `Retry-After`, 500s, a 422, a
hang past the client's timeout, a malformed body, and a 401 that echoes the API key it was sent (as some providers
do) so tests can check it is scrubbed. It counts requests and the most it had in flight at once.

Two ways to run it, with one interface (`url`, `configure`, `stats`, `prompts`, `reset`, `start`, `stop`, context
manager):
- `FakeOpenAI`: an asyncio server in a background thread; tests use the `fake_openai` fixture below
  (`from tests.fake_openai import fake_openai` in a test module makes it available there).
- `FakeOpenAIProcess`: the same server in a child process, so it does not share the client's CPU or event loop
  (benchmarks). It is scripted and read over HTTP (`POST /_fake/script`, `GET /_fake/stats`, `GET /_fake/prompts`).

Tokens are counted as whitespace-separated words (plus one per message), so tests can predict them.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import pytest
from aiohttp import web

FAULTS = ("ok", "429", "500", "422", "401", "hang", "malformed")  # "ok" answers normally: a later fault's place
NO_IDEA = "no idea"  # an answer that matches no label
_ANSWER_RE = re.compile(r"Answer:[ \t]*(\S[^\n]*)")


def answer_after_marker(messages: list[dict[str, Any]]) -> str:
    """The default answer: the rest of the line after the last "Answer:" in the prompt (a test can put the
    label it wants there); without one, the last line of the last message."""
    text = "\n".join(str(m.get("content") or "") for m in messages)
    found = _ANSWER_RE.findall(text)
    if found:
        return found[-1].strip()
    return text.strip().splitlines()[-1] if text.strip() else NO_IDEA


@dataclass
class Script:
    """How the server behaves. `faults` are consumed one per request, in arrival order; then it answers."""

    latency_s: float = 0.0
    faults: list[str] = field(default_factory=list)
    retry_after_s: float | None = 1.0  # the Retry-After header sent with each 429 (None: no header)
    hang_s: float = 30.0  # how long a "hang" fault waits before answering
    answer: str | Callable[[list[dict[str, Any]]], str] | None = None  # None: answer_after_marker
    # asked for logprobs: messages -> per token [text, logprob, {alternative: logprob}]; None: the answer as one
    # token of probability 1
    logprobs: Callable[[list[dict[str, Any]]], list] | None = None

    def __post_init__(self) -> None:
        unknown = [f for f in self.faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")
        self.faults = list(self.faults)  # a private copy: the server consumes it

    def answer_for(self, messages: list[dict[str, Any]]) -> str:
        if self.answer is None:
            return answer_after_marker(messages)
        return self.answer(messages) if callable(self.answer) else self.answer


@dataclass
class _State:
    script: Script = field(default_factory=Script)
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    arrivals_s: list[float] = field(default_factory=list)  # time.monotonic() at each chat request

    def stats(self) -> dict[str, int]:
        return {"requests": self.requests, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight}

    def prompts(self) -> list[str]:
        """The last message of every chat request, in arrival order: which items were asked for, how often."""
        return [str((body.get("messages") or [{}])[-1].get("content") or "") for body in self.bodies]

    def reset(self) -> None:
        """Zeroes the counts; requests still being answered stay counted in flight."""
        self.requests = 0
        self.max_in_flight = self.in_flight
        self.bodies.clear()
        self.authorizations.clear()
        self.arrivals_s.clear()


STATE = web.AppKey("state", _State)


def _count_tokens(text: str) -> int:
    return len(text.split())


def _completion(body: dict[str, Any], text: str, number: int) -> dict[str, Any]:
    words = text.split()
    if body.get("max_tokens"):
        words = words[: int(body["max_tokens"])]
    prompt_tokens = sum(_count_tokens(str(m.get("content") or "")) + 1 for m in body.get("messages", []))
    return {
        "id": f"chatcmpl-fake-{number}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": " ".join(words)}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                  "total_tokens": prompt_tokens + len(words)},
    }


def _logprobs(script: Script, body: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    text = response["choices"][0]["message"]["content"]
    tokens = script.logprobs(body.get("messages", [])) if script.logprobs else [[text, 0.0, {text: 0.0}]]
    return {"content": [{"token": token, "logprob": logprob, "bytes": None,
                         "top_logprobs": [{"token": alt, "logprob": lp, "bytes": None} for alt, lp in alts.items()]}
                        for token, logprob, alts in tokens]}


def _fault_response(fault: str, script: Script, authorization: str) -> web.Response:
    if fault == "429":
        headers = {} if script.retry_after_s is None else {"Retry-After": f"{script.retry_after_s:g}"}
        return web.json_response({"error": {"message": "rate limited", "type": "rate_limit_error"}},
                                 status=429, headers=headers)
    if fault == "500":
        return web.json_response({"error": {"message": "internal error", "type": "server_error"}}, status=500)
    if fault == "401":
        return web.json_response({"error": {"message": f"Incorrect API key provided: {authorization}",
                                             "type": "invalid_request_error"}}, status=401)
    if fault == "422":
        return web.json_response({"error": {"message": "unprocessable request", "type": "invalid_request"}},
                                 status=422)
    return web.Response(text='{"id": "chatcmpl-broken", "choices": [{"message": ', status=200,
                        content_type="application/json")


async def _chat(request: web.Request) -> web.StreamResponse:
    state: _State = request.app[STATE]
    state.requests += 1
    state.arrivals_s.append(time.monotonic())
    number = state.requests
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    try:
        body = await request.json()
        authorization = request.headers.get("Authorization", "")
        state.bodies.append(body)
        state.authorizations.append(authorization)
        script = state.script
        fault = script.faults.pop(0) if script.faults else "ok"
        if fault == "hang":
            await asyncio.sleep(script.hang_s)
        elif script.latency_s:
            await asyncio.sleep(script.latency_s)
        if fault not in ("ok", "hang"):
            return _fault_response(fault, script, authorization)
        response = _completion(body, script.answer_for(body.get("messages", [])), number)
        if body.get("logprobs"):
            response["choices"][0]["logprobs"] = _logprobs(script, body, response)
        return web.json_response(response)
    finally:
        state.in_flight -= 1


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "tests"}]})


async def _get_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats())


async def _get_prompts(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].prompts())


async def _post_script(request: web.Request) -> web.Response:
    request.app[STATE].script = Script(**await request.json())
    return web.json_response({"ok": True})


async def _post_reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"ok": True})


def make_app(state: _State) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_get("/_fake/stats", _get_stats)
    app.router.add_get("/_fake/prompts", _get_prompts)
    app.router.add_post("/_fake/script", _post_script)
    app.router.add_post("/_fake/reset", _post_reset)
    return app


async def _serve(state: _State, port: int = 0) -> tuple[web.AppRunner, int]:
    # Handlers stop when their client disconnects, so "in flight" counts only calls a client still waits for
    # (a client that timed out is no longer counted); a short shutdown timeout lets a "hang" end at stop().
    runner = web.AppRunner(make_app(state), access_log=None, shutdown_timeout=0.2, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    return runner, runner.addresses[0][1]


async def _shutdown(runner: web.AppRunner) -> None:
    """Stops serving and cancels handlers still running (a "hang"), so none is left pending."""
    await runner.cleanup()
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


class FakeOpenAI:
    """The fake server in a background thread of this process."""

    def __init__(self, **script: Any) -> None:
        self.state = _State(script=Script(**script))
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The api_base to give a client."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON body of every chat request received, in arrival order."""
        return self.state.bodies

    @property
    def authorizations(self) -> list[str]:
        """The Authorization header of every chat request received."""
        return self.state.authorizations

    @property
    def arrivals_s(self) -> list[float]:
        """time.monotonic() at the arrival of every chat request (this process's clock)."""
        return self.state.arrivals_s

    def configure(self, **script: Any) -> None:
        self.state.script = Script(**script)

    def stats(self) -> dict[str, int]:
        return self.state.stats()

    def prompts(self) -> list[str]:
        return self.state.prompts()

    def reset(self) -> None:
        self.state.reset()

    def start(self) -> "FakeOpenAI":
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-openai", daemon=True)
        self._thread.start()
        self._runner, self.port = asyncio.run_coroutine_threadsafe(_serve(self.state), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(_shutdown(self._runner), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeOpenAIProcess:
    """The fake server in a child process (its own CPU and event loop). `answer` may only be a string here."""

    def __init__(self, **script: Any) -> None:
        self._script = asdict(Script(**script))
        self.port = 0
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _call(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def configure(self, **script: Any) -> None:
        self._call("/_fake/script", asdict(Script(**script)))

    def stats(self) -> dict[str, int]:
        return self._call("/_fake/stats")

    def prompts(self) -> list[str]:
        return self._call("/_fake/prompts")

    def reset(self) -> None:
        self._call("/_fake/reset", {})

    def start(self) -> "FakeOpenAIProcess":
        self._proc = subprocess.Popen([sys.executable, __file__, "--script", json.dumps(self._script)],
                                      stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"fake server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None

    def __enter__(self) -> "FakeOpenAIProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def fake_openai():
    """A started FakeOpenAI (no latency, no faults); reconfigure it with `fake_openai.configure(...)`."""
    with FakeOpenAI() as server:
        yield server


async def _serve_forever(script: dict[str, Any]) -> None:
    runner, port = await _serve(_State(script=Script(**script)))
    print(f"PORT {port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server (prints 'PORT n' when ready).")
    parser.add_argument("--script", default="{}", help="Script fields as JSON, e.g. '{\"latency_s\": 0.2}'")
    asyncio.run(_serve_forever(json.loads(parser.parse_args().script)))


if __name__ == "__main__":
    main()
