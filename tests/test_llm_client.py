"""LLMClient through litellm over real HTTP, against the fault-injecting fake server in tests/fake_openai.py.

Every client starts a worker process, so tests share one server and one client where their settings agree."""
from __future__ import annotations

import email.utils
import json
import logging
import multiprocessing
import time
import urllib.request

import pytest

from harness.errors import HarnessError
from harness.llm.base import ChatRequest, Completion, Pricing
from harness.llm.client import LLMClient
from harness.llm.retry import MAX_RETRY_AFTER_S, CallSettings, retry_after_s
from tests.fake_openai import NO_IDEA, FakeOpenAI

SECRET = "sk-test-0123456789abcdef"
PRICES = Pricing(input_usd_per_token=1e-6, output_usd_per_token=1e-5)


def requests(count: int, prefix: str = "item") -> list[ChatRequest]:
    return [ChatRequest(key=f"{prefix}{i}", messages=[
        {"role": "system", "content": "Pick one label: card_arrival, lost_card, top_up"},
        {"role": "user", "content": f"{prefix} {i}: where is my card?\nAnswer: card_arrival"}])
        for i in range(count)]


def make_client(server, **settings) -> LLMClient:
    defaults = {"model": "openai/fake", "api_base": server.url, "cache_dir": None, "backoff_s": 0.01,
                "timeout_s": 10.0, "max_retries": 2, "max_concurrency": 4, "pricing": PRICES}
    return LLMClient(**{**defaults, **settings})


def run_all(client: LLMClient, items: list[ChatRequest]) -> dict[str, Completion]:
    return {request.key: completion for request, completion in client.run(items)}


def eventually(condition, within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh_server(server):
    server.configure()
    server.reset()


@pytest.fixture(scope="module")
def client(server):
    with make_client(server) as shared:
        yield shared


@pytest.fixture
def client_factory(server):
    made = []

    def make(**settings) -> LLMClient:
        made.append(make_client(server, **settings))
        return made[-1]

    yield make
    for one in made:
        one.close()


def test_answers_with_usage_latency_cost_and_one_attempt(server, client):
    server.configure(latency_s=0.05)
    results = run_all(client, requests(3))
    assert set(results) == {"item0", "item1", "item2"}
    words = sum(len(message["content"].split()) + 1 for message in requests(1)[0].messages)  # the fake's count
    for completion in results.values():
        assert completion.error is None and completion.text == "card_arrival"
        assert completion.prompt_tokens == words and completion.completion_tokens == 1
        assert completion.attempts == 1 and not completion.cached
        assert 50.0 <= completion.latency_ms < 5000.0
        assert completion.cost_usd == completion.spent_usd == pytest.approx(words * 1e-6 + 1e-5)
    assert server.bodies[0]["max_tokens"] == 16 and server.bodies[0]["temperature"] == 0.0


def test_fake_server_lists_its_model(server):
    with urllib.request.urlopen(f"{server.url}/models", timeout=5) as response:
        assert json.load(response)["data"][0]["id"] == "fake"


def test_answer_matching_no_label_is_returned_as_is(server, client):
    server.configure(answer=NO_IDEA)
    assert run_all(client, requests(1))["item0"].text == NO_IDEA


def test_429_waits_for_retry_after(server, client):
    server.configure(faults=["429"], retry_after_s=1.0)
    completion = run_all(client, requests(1))["item0"]
    assert completion.error is None and completion.attempts == 2
    first, second = server.arrivals_s
    assert second - first >= 1.0  # backoff_s is 0.01: only the header explains the wait


def test_500_then_success(server, client):
    server.configure(faults=["500"])
    completion = run_all(client, requests(1))["item0"]
    assert (completion.error, completion.attempts, completion.text) == (None, 2, "card_arrival")


def test_error_recorded_when_retries_run_out(server, client):
    server.configure(faults=["500"] * 3)
    completion = run_all(client, requests(1))["item0"]
    assert completion.attempts == 3 and "InternalServerError" in completion.error
    assert (completion.text, completion.cost_usd) == ("", 0.0)
    assert server.stats()["requests"] == 3


def test_no_retry_on_422(server, client):
    server.configure(faults=["422"])
    completion = run_all(client, requests(1))["item0"]
    assert completion.attempts == 1 and "unprocessable request" in completion.error
    assert server.stats()["requests"] == 1


def test_malformed_body_is_recorded_as_an_error(server, client):
    server.configure(faults=["malformed"] * 3)
    completion = run_all(client, requests(1))["item0"]
    assert completion.error and completion.text == "" and completion.attempts == 3


def test_timeout_is_recorded_as_an_error(server, client_factory):
    server.configure(faults=["hang"], hang_s=5.0)
    slow = client_factory(timeout_s=0.5, max_retries=0)
    started = time.perf_counter()
    completion = run_all(slow, requests(1))["item0"]
    assert "timed out" in completion.error and completion.attempts == 1
    assert time.perf_counter() - started < 4.5
    assert eventually(lambda: server.stats()["in_flight"] == 0)  # the client hung up instead of waiting


def test_consumer_stopping_early_cancels_calls_then_runs_again(server, client):
    # answers echo the item ("again 3"), so an answer delivered to the wrong request would show
    echo = lambda messages: messages[-1]["content"].split(":")[0]  # noqa: E731
    server.configure(faults=["ok", "ok"] + ["hang"] * 30, hang_s=30.0, answer=echo)
    stream = client.run(requests(20))
    seen = [next(stream)[0].key for _ in range(2)]
    assert eventually(lambda: server.stats()["in_flight"] > 0)
    stream.close()
    assert eventually(lambda: server.stats()["in_flight"] == 0)  # far sooner than hang_s: calls were cancelled
    assert len(seen) == 2 and server.stats()["requests"] < 20
    server.configure(latency_s=0.05, answer=echo)
    again = run_all(client, requests(6, prefix="again"))
    assert sorted(again) == [f"again{i}" for i in range(6)]
    assert all(completion.text.replace(" ", "") == key for key, completion in again.items())


def test_rerun_is_served_from_cache_and_failures_are_not_cached(server, client_factory, tmp_path):
    server.configure(latency_s=0.02, faults=["422"])
    first = run_all(client_factory(cache_dir=str(tmp_path)), requests(5))
    (failed,) = [key for key, completion in first.items() if completion.error]
    assert server.stats()["requests"] == 5
    second = run_all(client_factory(cache_dir=str(tmp_path)), requests(5))  # a new process's view
    assert server.stats()["requests"] == 6  # only the failed item was asked again
    assert not second[failed].cached and second[failed].error is None
    for key in set(first) - {failed}:
        completion = second[key]
        assert completion.cached and completion.spent_usd == 0.0 and completion.attempts == 0
        assert (completion.text, completion.prompt_tokens, completion.cost_usd, completion.latency_ms) == (
            first[key].text, first[key].prompt_tokens, first[key].cost_usd, first[key].latency_ms)
        assert first[key].spent_usd == first[key].cost_usd > 0
    children = len(multiprocessing.active_children())
    third = run_all(client_factory(cache_dir=str(tmp_path)), requests(5))
    assert all(completion.cached for completion in third.values())
    assert len(multiprocessing.active_children()) == children  # a fully cached run starts no worker


def test_cache_key_covers_what_changes_the_answer(server):
    base = make_client(server, cache_identity="qwen@sha256:abc")
    request = requests(1)[0]
    key = base.cache_key(request)
    assert base.cache_key(ChatRequest(key="x", messages=requests(1, prefix="other")[0].messages)) != key
    assert base.cache_key(ChatRequest(key=request.key, messages=request.messages,
                                      extra={"response_format": {"type": "json_object"}})) != key
    assert make_client(server, cache_identity="qwen@sha256:def").cache_key(request) != key
    assert make_client(server, cache_identity="qwen@sha256:abc", max_tokens=8).cache_key(request) != key
    assert make_client(server, cache_identity="qwen@sha256:abc", temperature=0.7).cache_key(request) != key
    # a local server's port changes every run; with cache_identity it does not change the key
    moved = LLMClient(model="openai/fake", api_base="http://127.0.0.1:1/v1", cache_identity="qwen@sha256:abc")
    assert moved.cache_key(request) == key
    # without cache_identity, the model name is the identity
    assert make_client(server, model="openai/other").cache_key(request) != make_client(server).cache_key(request)


def test_two_endpoints_serving_one_model_name_never_share_answers(server, tmp_path):
    """Without cache_identity, the endpoint is part of the key: a vLLM box and an Ollama box that both serve
    'openai/qwen' give their own answers; naming the identity shares them on purpose."""
    request = requests(1)[0]
    here, there = (LLMClient(model="openai/qwen", api_base=url) for url in ("http://a:8000/v1", "http://b:8000/v1"))
    assert here.cache_key(request) != there.cache_key(request)
    assert here.identity == "openai/qwen@http://a:8000/v1"
    assert LLMClient(model="gpt-4o-mini").identity == "gpt-4o-mini"  # the provider's own endpoint
    named = [LLMClient(model="openai/qwen", api_base=url, cache_identity="qwen-7b@vllm")
             for url in ("http://a:8000/v1", "http://b:8000/v1")]
    assert named[0].cache_key(request) == named[1].cache_key(request)
    with make_client(server, cache_dir=str(tmp_path)) as first:
        run_all(first, [request])
    with make_client(server, cache_dir=str(tmp_path), api_base="http://127.0.0.1:1/v1", max_retries=0) as moved:
        (completion,) = run_all(moved, [request]).values()
    assert not completion.cached and completion.error  # asked the other endpoint, which is not there


def test_api_key_is_sent_but_never_recorded_or_cached(server, client_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_PROVIDER_KEY", SECRET)
    server.configure(faults=["401"])  # its body echoes the key, as some providers do
    keyed = client_factory(api_key_env="FAKE_PROVIDER_KEY", cache_dir=str(tmp_path))
    results = run_all(keyed, requests(2))
    assert server.authorizations == [f"Bearer {SECRET}"] * 2
    failed = [completion for completion in results.values() if completion.error]
    assert len(failed) == 1 and SECRET not in failed[0].error and "***" in failed[0].error
    assert SECRET not in keyed.cache_key(requests(1)[0])
    assert all(SECRET.encode() not in path.read_bytes() for path in tmp_path.iterdir())


def test_missing_key_variable_raises_before_any_call(server, monkeypatch):
    monkeypatch.delenv("FAKE_PROVIDER_KEY", raising=False)
    with pytest.raises(HarnessError, match="FAKE_PROVIDER_KEY"):
        make_client(server, api_key_env="FAKE_PROVIDER_KEY").run(requests(1))
    assert server.stats()["requests"] == 0


def test_key_file_is_read(server, client_factory, tmp_path):
    (tmp_path / "key.txt").write_text(SECRET + "\n")
    run_all(client_factory(api_key_file=str(tmp_path / "key.txt")), requests(1))
    assert server.authorizations == [f"Bearer {SECRET}"]
    with pytest.raises(HarnessError, match="missing.txt"):
        make_client(server, api_key_file=str(tmp_path / "missing.txt")).run(requests(1))


@pytest.mark.parametrize("concurrency,workers", [(3, 1), (5, 2)])
def test_concurrency_never_exceeds_the_bound(server, client_factory, concurrency, workers):
    server.configure(latency_s=0.1)
    results = run_all(client_factory(max_concurrency=concurrency, workers=workers), requests(4 * concurrency))
    assert len(results) == 4 * concurrency and all(c.error is None for c in results.values())
    assert server.stats()["max_in_flight"] == concurrency


def test_per_token_cost_from_litellm_price_map(server, client_factory):
    import litellm

    completion = run_all(client_factory(model="openai/gpt-4o-mini", pricing=Pricing()), requests(1))["item0"]
    input_usd, output_usd = litellm.cost_per_token(model="gpt-4o-mini", prompt_tokens=completion.prompt_tokens,
                                                   completion_tokens=completion.completion_tokens)
    assert completion.cost_usd == pytest.approx(input_usd + output_usd) and completion.cost_usd > 0


def test_per_token_cost_override_one_side(server):
    import litellm

    client = make_client(server, model="gpt-4o-mini", pricing={"output_usd_per_token": 1e-3})
    mapped_input_usd, _ = litellm.cost_per_token(model="gpt-4o-mini", prompt_tokens=1000, completion_tokens=0)
    cost = client.cost_usd(Completion(prompt_tokens=1000, completion_tokens=10))
    assert cost == pytest.approx(mapped_input_usd + 10 * 1e-3)


def test_unmapped_model_costs_zero_with_one_warning(server, caplog):
    with caplog.at_level(logging.WARNING, logger="harness.llm.client"):
        costs = [make_client(server, model="openai/not-a-mapped-model", pricing=Pricing()).cost_usd(
            Completion(prompt_tokens=100, completion_tokens=5)) for _ in range(2)]
    assert costs == [0.0, 0.0]
    assert sum("not-a-mapped-model" in record.getMessage() for record in caplog.records) == 1


def test_per_second_cost(server, client_factory):
    server.configure(latency_s=0.05)
    local = client_factory(pricing=Pricing(mode="per_second", usd_per_hour=3.6))
    for completion in run_all(local, requests(2)).values():
        assert completion.cost_usd == pytest.approx(completion.latency_ms / 1000 * 3.6 / 3600)
        assert completion.cost_usd >= 0.05 * 3.6 / 3600


def test_unknown_pricing_mode_lists_choices(server):
    with pytest.raises(HarnessError, match="per_token, per_second"):
        make_client(server, pricing={"mode": "per_minute"}).run(requests(1))


def test_backoff_doubles_with_jitter_and_retry_after_replaces_it():
    settings = CallSettings(model="m", api_base=None, temperature=0.0, max_tokens=1, timeout_s=1.0,
                            max_retries=4, backoff_s=1.0, concurrency=1)
    third = [settings.backoff_delay_s(3, None) for _ in range(50)]
    assert all(2.0 <= delay <= 4.0 for delay in third) and len(set(third)) > 1  # step 4 s, half of it jitter
    assert settings.backoff_delay_s(1, 2.5) == 2.5
    assert settings.backoff_delay_s(1, 10_000.0) == MAX_RETRY_AFTER_S


def test_retry_after_header_forms():
    import httpx

    def wait_for(**headers) -> float | None:
        error = Exception("rate limited")
        error.litellm_response_headers = httpx.Headers(headers)
        return retry_after_s(error)

    assert wait_for(**{"Retry-After": "3"}) == 3.0
    assert wait_for(**{"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    in_30_s = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25.0 <= wait_for(**{"Retry-After": in_30_s}) <= 31.0
    assert wait_for(**{"Retry-After": "soon"}) is None and wait_for() is None


def test_each_sample_is_cached_apart_and_the_first_keeps_the_single_calls_key(server, client_factory, tmp_path):
    import hashlib

    from harness.llm.cache import cache_key

    request = requests(1)[0]
    # the key a single call has always had: caches written before repeated sampling stay valid
    before = json.dumps({"model": "qwen@sha256:abc", "messages": request.messages, "temperature": 0.0,
                         "max_tokens": 16, "extra": {}}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert cache_key(identity="qwen@sha256:abc", messages=request.messages, temperature=0.0, max_tokens=16,
                     extra={}) == hashlib.sha256(before.encode("utf-8")).hexdigest()
    client = client_factory(cache_dir=str(tmp_path), temperature=0.7)
    samples = [ChatRequest(key=request.key, messages=request.messages, sample=s) for s in range(3)]
    assert len({client.cache_key(one) for one in samples}) == 3
    assert client.cache_key(samples[0]) == client.cache_key(request)
    assert [c.cached for _, c in client.run(samples)] == [False] * 3 and server.stats()["requests"] == 3
    assert [c.cached for _, c in client.run(samples)] == [True] * 3 and server.stats()["requests"] == 3
