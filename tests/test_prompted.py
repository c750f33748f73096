"""Prompted strategies: messages (shared prefix first, exemplars and retrieved items only from training),
predictions from answers (parsing, invalid, errors, tokens, cost), config errors, the cost projection, and
a run through the runner, litellm and the fake OpenAI-compatible server."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from harness.config import instantiate
from harness.costs.hardware import HardwareProfile
from harness.errors import HarnessError
from harness.llm.base import Completion
from harness.llm.factory import Endpoint
from harness.run.services import Services

HARDWARE = HardwareProfile(name="test-cpu", usd_per_hour=3.6, source="test")  # 0.001 $ per second


class ScriptedClient:
    """Test fake of the LLM client: answers each request with `answer(messages)` (None: a failed call)."""

    def __init__(self, answer, temperature: float = 0.0) -> None:
        self.answer = answer
        self.temperature = temperature
        self.requests = []

    def run(self, requests):
        for request in requests:
            self.requests.append(request)
            text = self.answer(request.messages)
            if text is None:
                yield request, Completion(error="HTTP 500: internal error", attempts=5)
            else:
                yield request, Completion(text=text, prompt_tokens=100, completion_tokens=4, latency_ms=250.0,
                                          cost_usd=2.5e-4, spent_usd=2.5e-4)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def dataset(tiny_csv):
    from harness.data import load_table

    return load_table(path=str(tiny_csv), split_column="split", id_column="id")


@pytest.fixture(scope="module")
def embedder():
    from harness.config import compose

    return instantiate(compose([]).embedder)


@pytest.fixture
def make(tiny_cfg, dataset, embedder, tmp_path):
    """make('few_shot', 'strategies.few_shot.k_per_class=2', answer=fn) -> a strategy fitted on `data` (default:
    the tiny dataset) and its scripted client."""
    def build(strategy: str, *overrides: str, answer=lambda messages: "no idea", seed: int = 0, data=None,
              temperature: float = 0.0):
        cfg = tiny_cfg("default", *overrides)
        client = ScriptedClient(answer, temperature)
        services = Services(hardware=HARDWARE, run_dir=tmp_path, seed=seed, embedder_factory=lambda: embedder,
                            llm_factory=lambda model: Endpoint(model["name"], client, "none", 1))
        return instantiate(cfg.strategies[strategy], name=strategy).fit(data or dataset, services), client
    return build


def _user_prompts(strategy, dataset):
    return [strategy.messages(ex, ctx)[1]["content"]
            for ex, ctx in zip(dataset.heldout, strategy._item_contexts(dataset.heldout)[0])]


def _shown_examples(text: str) -> list[str]:
    return [line[len("Text: "):] for line in text.splitlines() if line.startswith("Text: ")]


def test_zero_shot_puts_the_shared_part_first(make, dataset):
    strategy, _ = make("zero_shot")
    contexts, _ = strategy._item_contexts(dataset.heldout)
    all_messages = [strategy.messages(ex, ctx) for ex, ctx in zip(dataset.heldout, contexts)]
    assert {m[0]["role"] for m in all_messages} == {"system"}
    assert len({m[0]["content"] for m in all_messages}) == 1  # identical for every item: the reusable prefix
    system = all_messages[0][0]["content"]
    assert ", ".join(dataset.labels) in system  # the compact label list
    for ex, messages in zip(dataset.heldout, all_messages):
        assert messages[1] == {"role": "user", "content": f"Text: {ex.text}\nCategory:"}
    assert strategy.latency_basis == "per-item (concurrency 1)" and strategy.model_name
    prompt = strategy.prompt_artefact()
    assert len(prompt.templates_sha256["system"]) == 64 and len(prompt.templates_sha256["user"]) == 64
    assert (strategy.system_prompt_file_.read_text() == system)


def test_template_change_changes_its_hash(make):
    base, _ = make("zero_shot")
    changed, _ = make("zero_shot", "strategies.zero_shot.user_template='Text: {{ text }}'")
    assert base.prompt_artefact().templates_sha256["user"] != changed.prompt_artefact().templates_sha256["user"]
    assert base.prompt_artefact().templates_sha256["system"] == changed.prompt_artefact().templates_sha256["system"]


def test_few_shot_random_takes_k_per_class_from_training_only(make, dataset):
    strategy, _ = make("few_shot", "strategies.few_shot.k_per_class=2")
    shown = _shown_examples(strategy.system_prompt_)
    train_label = {ex.text: ex.label for ex in dataset.train}
    assert len(shown) == 2 * len(dataset.labels)
    assert all(text in train_label for text in shown)
    assert not set(shown) & {ex.text for ex in dataset.heldout}
    assert Counter(train_label[t] for t in shown) == {label: 2 for label in dataset.labels}
    # the exemplars sit in the shared system message, not in each item's message
    assert all(len(_shown_examples(p)) == 1 for p in _user_prompts(strategy, dataset))


def test_few_shot_random_k_total_and_seed(make, dataset):
    first, _ = make("few_shot", "strategies.few_shot.k_per_class=null", "strategies.few_shot.k_total=8")
    again, _ = make("few_shot", "strategies.few_shot.k_per_class=null", "strategies.few_shot.k_total=8")
    other, _ = make("few_shot", "strategies.few_shot.k_per_class=null", "strategies.few_shot.k_total=8", seed=1)
    assert len(_shown_examples(first.system_prompt_)) == 8
    assert first.system_prompt_ == again.system_prompt_ != other.system_prompt_


def test_few_shot_nearest_picks_each_items_nearest_training_examples(make, dataset, embedder):
    strategy, _ = make("few_shot", "strategies.few_shot.selection=nearest", "strategies.few_shot.k_per_class=null",
                       "strategies.few_shot.k_total=3")
    assert _shown_examples(strategy.system_prompt_) == []
    train_vectors, _ = embedder.encode([ex.text for ex in dataset.train])
    for ex, prompt in zip(dataset.heldout, _user_prompts(strategy, dataset)):
        shown = _shown_examples(prompt)
        assert len(shown) == 4 and shown[-1] == ex.text  # 3 exemplars, then the item itself
        query, _ = embedder.encode([ex.text])
        best = dataset.train[int(np.argmax(train_vectors @ query[0]))].text
        assert shown[-2] == best  # the closest exemplar sits next to the question


def test_few_shot_nearest_per_class(make, dataset):
    strategy, _ = make("few_shot", "strategies.few_shot.selection=nearest")
    prompt = _user_prompts(strategy, dataset)[0]
    labels = [line[len("Category: "):] for line in prompt.splitlines() if line.startswith("Category: ")]
    assert Counter(labels) == {label: 1 for label in dataset.labels}


def test_rag_retrieves_training_items(make, dataset):
    strategy, _ = make("rag", "strategies.rag.k_examples=4")
    train_texts = {ex.text for ex in dataset.train}
    contexts, seconds = strategy._item_contexts(dataset.heldout)
    assert (seconds > 0).all()  # the query embeddings' measured time, charged to each item
    for ex, ctx in zip(dataset.heldout, contexts):
        assert len(ctx["examples"]) == 4 and all(e["text"] in train_texts for e in ctx["examples"])
        assert ex.text not in {e["text"] for e in ctx["examples"]}
        assert ctx["candidates"] == []  # no taxonomy descriptions: no candidate labels
        prompt = strategy.messages(ex, ctx)[1]["content"]
        assert "Likely categories" not in prompt and prompt.endswith(f"Text: {ex.text}\nCategory:")
    hits = sum(ex.label in {e["label"] for e in ctx["examples"]} for ex, ctx in zip(dataset.heldout, contexts))
    assert hits / len(contexts) > 0.7  # retrieval finds same-intent training items


def test_rag_retrieves_candidate_labels_by_description(make, dataset):
    from dataclasses import replace

    described = replace(dataset, descriptions={label: f"the customer asks about {label.replace('_', ' ')}"
                                               for label in dataset.labels})
    strategy, _ = make("rag", "strategies.rag.k_labels=2", data=described)
    contexts, _ = strategy._item_contexts(described.heldout)
    for ex, ctx in zip(described.heldout, contexts):
        assert [c["description"] for c in ctx["candidates"]] == [described.descriptions[c["label"]]
                                                               for c in ctx["candidates"]]
        assert len(ctx["candidates"]) == 2
        assert "Likely categories:\n- " in strategy.messages(ex, ctx)[1]["content"]
    hits = sum(ex.label in {c["label"] for c in ctx["candidates"]} for ex, ctx in zip(described.heldout, contexts))
    assert hits / len(contexts) > 0.5  # the item's own intent is usually among the two closest descriptions
def test_predictions_carry_answers_tokens_cost_and_failures(make, dataset):
    gold = {ex.text: ex.label for ex in dataset.heldout}
    items = dataset.heldout[:6]

    def answer(messages):
        text = messages[1]["content"].splitlines()[0][len("Text: "):]
        index = [ex.text for ex in items].index(text)
        return [gold[text], gold[text].replace("_", " ").upper(), "no idea", None, f"It is {gold[text]}.",
                gold[text]][index]

    strategy, client = make("zero_shot", answer=answer)
    predictions = list(strategy.predict(items))
    assert [p.item_id for p in predictions] == [ex.id for ex in items]
    assert [p.extra["parse"] for p in predictions] == ["exact", "normalised", "invalid", "error", "contained",
                                                       "exact"]
    assert [p.correct for p in predictions] == [True, True, False, False, True, True]
    invalid, failed = predictions[2], predictions[3]
    assert invalid.pred is None and invalid.error is None and invalid.raw == "no idea"
    assert failed.pred is None and failed.error == "HTTP 500: internal error" and failed.extra["attempts"] == 5
    ok = predictions[0]
    assert (ok.prompt_tokens, ok.completion_tokens, ok.latency_ms, ok.cost_usd) == (100, 4, 250.0, 2.5e-4)
    assert ok.extra["user_prompt"] == client.requests[0].messages[1]["content"]
    assert all(r.extra == {} for r in client.requests)  # output_mode none: no constraint sent


def test_grammar_mode_sends_the_label_grammar(make, dataset):
    strategy, client = make("zero_shot", "strategies.zero_shot.output_mode=grammar",
                            answer=lambda messages: dataset.labels[0])
    list(strategy.predict(dataset.heldout[:2]))
    from harness.llm.parsing import gbnf_grammar

    assert client.requests[0].extra == {"extra_body": {"grammar": gbnf_grammar(dataset.labels)}}


def test_repeated_samples_vote_and_report_their_agreement(make, dataset):
    from harness import metrics

    items = dataset.heldout[:4]
    gold = {ex.text: ex.label for ex in items}
    other = {ex.text: next(label for label in dataset.labels if label != ex.label) for ex in items}
    asked = Counter()

    def answer(messages):  # item 0: wrong, right, right; the others right every time
        text = messages[1]["content"].splitlines()[0][len("Text: "):]
        asked[text] += 1
        return other[text] if text == items[0].text and asked[text] == 1 else gold[text]

    majority, client = make("zero_shot", "strategies.zero_shot.samples=3", "strategies.zero_shot.aggregate=majority",
                            answer=answer, temperature=0.7)
    predictions = list(majority.predict(items))
    assert [r.sample for r in client.requests[:3]] == [0, 1, 2]  # an item's samples together
    assert {r.key for r in client.requests[:3]} == {items[0].id}
    first = predictions[0]
    assert first.correct and first.extra["samples"] == [other[items[0].text], items[0].label, items[0].label]
    assert first.extra["agreement"] == pytest.approx(2 / 3)
    assert (first.prompt_tokens, first.latency_ms, first.cost_usd) == (300, 750.0, pytest.approx(7.5e-4))
    assert majority.describe()["samples"] == 3 and "3 samples per item" in majority.latency_basis
    asked.clear()
    firsts, _ = make("zero_shot", "strategies.zero_shot.samples=3", answer=answer, temperature=0.7)
    assert not next(iter(firsts.predict(items))).correct  # `first` takes what one call answered

    records = pd.DataFrame([p.to_record("zero_shot") for p in predictions])
    # one item of four changed; its samples were 1/3 wrong: variance 3/2 * (1/3)(2/3) = 1/3, mean 1/12
    assert metrics.sampling(records) == {"n_samples": 3, "changed_share": 0.25, "sample_accuracy": 11 / 12,
                                         "within_item_variance": pytest.approx(1 / 12),
                                         "sampling_se": pytest.approx(np.sqrt(1 / 48))}
    single, _ = make("zero_shot", answer=answer)
    assert metrics.sampling(pd.DataFrame([p.to_record("zero_shot") for p in single.predict(items)])) is None


@pytest.mark.parametrize("overrides, temperature, message", [
    (["strategies.zero_shot.samples=3"], 0.0, "samples=3 needs a temperature above 0"),
    (["strategies.zero_shot.samples=0"], 0.7, "samples must be a positive integer, got 0"),
    (["strategies.zero_shot.aggregate=vote"], 0.7, "no aggregate 'vote'; known: first, majority"),
])
def test_sampling_config_errors(make, overrides, temperature, message):
    with pytest.raises(HarnessError, match=message):
        make("zero_shot", *overrides, temperature=temperature)


@pytest.mark.parametrize("overrides, message", [
    (["strategies.few_shot.k_total=5"], "set exactly one of k_per_class and k_total"),
    (["strategies.few_shot.selection=similar"], "no selection 'similar'; known: random, nearest"),
])
def test_few_shot_config_errors(make, overrides, message):
    with pytest.raises(HarnessError, match=message):
        make("few_shot", *overrides)


def test_template_errors_name_the_key_and_the_variables(make):
    with pytest.raises(HarnessError, match=r"'user_template'.*'question' is undefined; available: examples, task, text"):
        make("zero_shot", "strategies.zero_shot.user_template='{{ question }}'")
    with pytest.raises(HarnessError, match="'system_template': Jinja2 syntax error"):
        make("zero_shot", "strategies.zero_shot.system_template='{% for %}'")


# ------------------------------------------------------------------------------ end to end, over HTTP
def _answer_gold(dataset):
    """The fake server answers each item's gold label, except items whose text contains 'card' ('no idea')."""
    gold = {ex.text: ex.label for ex in dataset.heldout}

    def answer(messages):
        text = messages[-1]["content"].splitlines()[-2][len("Text: "):]
        return "no idea" if "card" in text else gold[text]
    return answer


@pytest.fixture(scope="module")
def two_runs(tiny_csv, dataset, tmp_path_factory):
    """The three prompted strategies run twice through the runner, the real client and litellm against the fake
    server (answers: the gold label, or 'no idea' for items mentioning 'card'); the second run is identical."""
    pytest.importorskip("harness.llm.client")
    from harness.config import compose
    from tests.conftest import run
    from tests.conftest import tiny_overrides
    from tests.fake_openai import FakeOpenAI

    tmp = tmp_path_factory.mktemp("prompted")
    with FakeOpenAI(latency_s=0.01, answer=_answer_gold(dataset)) as server:
        overrides = [
            "experiment=default", *tiny_overrides(tiny_csv, tmp), "dataset.heldout_size=null",
            "model=openai_compatible", "model.name=fake-model", "model.litellm_model=openai/fake-model",
            f"model.api_base={server.url}", "model.output_mode=json_enum", "model.client.max_concurrency=4",
            f"llm.cache_dir={tmp / 'llm-cache'}", "~strategies.tfidf_logreg", "~strategies.embed_logreg",
            "~strategies.embed_knn", "strategies.few_shot.k_per_class=null", "strategies.few_shot.k_total=8"]
        first = run(compose(overrides))
        stats, body = server.stats(), server.bodies[0]
        server.reset()
        second = run(compose(overrides))
        return {"first": first, "second": second, "stats": stats, "body": body,
                "stats_second": server.stats()}


def test_runner_records_carry_tokens_latency_cost(two_runs, dataset):
    n_items = len(dataset.heldout)
    assert two_runs["stats"]["requests"] == 3 * n_items and two_runs["stats"]["max_in_flight"] <= 4
    assert two_runs["body"]["response_format"]["schema"]["properties"]["label"]["enum"] == dataset.labels
    records = pd.read_parquet(two_runs["first"] / "predictions.parquet")
    assert (records["prompt_tokens"] > 0).all() and (records["completion_tokens"] > 0).all()
    assert (records["latency_ms"] >= 10).all() and (records["cost_usd"] > 0).all()
    has_card = records["item_id"].map({ex.id: "card" in ex.text for ex in dataset.heldout})
    assert records.loc[~has_card, "correct"].all()
    assert records.loc[has_card, "pred"].isna().all() and records.loc[has_card, "error"].isna().all()
    results = pd.read_csv(two_runs["first"] / "results.csv").set_index("strategy")
    assert (results["n_invalid"] == has_card.sum() / 3).all() and (results["n_cached"] == 0).all()
    assert results.loc["rag", "latency_basis"] == "per-item (concurrency 4)"
    manifest = json.loads((two_runs["first"] / "manifest.json").read_text())
    assert manifest["strategies"]["zero_shot"]["model"] == "fake-model"
    assert manifest["strategies"]["few_shot"]["prompt"]["templates_sha256"]["system"]


def test_a_rerun_is_served_from_the_cache(two_runs, dataset):
    assert two_runs["stats_second"]["requests"] == 0
    first = pd.read_csv(two_runs["first"] / "results.csv").set_index("strategy")
    again = pd.read_csv(two_runs["second"] / "results.csv").set_index("strategy")
    assert (again["n_cached"] == len(dataset.heldout)).all()
    assert (again.loc[["zero_shot", "few_shot"], "spent_usd"] == 0).all()
    # rag still embeds its queries on this machine: that part is really spent again, the model call is not
    assert 0 < again.loc["rag", "spent_usd"] < first.loc["rag", "spent_usd"]
    assert np.allclose(again["accuracy"], first["accuracy"])
    assert np.allclose(again["cost_per_1k_usd"], first["cost_per_1k_usd"], rtol=0.5)  # steady-state cost kept


def test_projection_counts_each_models_tokens_and_prices(two_runs):
    import litellm

    from harness.costs.projection import Projection, frame, project
    from harness.run.directory import RunDir

    projection = pd.read_csv(two_runs["first"] / "projection.csv")
    assert set(projection["strategy"]) == {"zero_shot", "few_shot", "rag"}
    assert (projection["input_usd_per_1m_tokens"] > 0).all() and (projection["prefix_tokens"] > 0).all()
    md = (two_runs["first"] / "report.md").read_text()
    assert "Projected API cost (a projection, not measured)" in md and "rag @ gpt-4o-mini" in md

    rows = [Projection.from_dict(r) for r in project(RunDir.open(two_runs["first"]), {"models": [
        {"name": "gpt-4o-mini"}, {"name": "claude-haiku-4-5"},
        {"name": "my-model", "input_usd_per_1m_tokens": 1.0, "output_usd_per_1m_tokens": 2.0}]})]
    table = frame(rows).set_index(["strategy", "api_model"])
    price = litellm.model_cost["gpt-4o-mini"]
    row = table.loc[("few_shot", "gpt-4o-mini")]
    assert row["input_usd_per_1m_tokens"] == pytest.approx(price["input_cost_per_token"] * 1e6)
    assert row["batch_input_usd_per_1m_tokens"] == pytest.approx(price["input_cost_per_token_batches"] * 1e6)
    assert row["cache_read_usd_per_1m_tokens"] == pytest.approx(price["cache_read_input_token_cost"] * 1e6)
    assert row["retires_on"] == price["deprecation_date"]
    assert 0 < row["prefix_tokens"] < row["prompt_tokens_mean"]  # the shared system prompt, then the item
    assert "o200k_base" in row["tokenizer"] and "litellm" in row["price_source"]
    assert table.loc[("few_shot", "claude-haiku-4-5"), "prompt_tokens_mean"] != row["prompt_tokens_mean"]
    mine = table.loc[("few_shot", "my-model")]
    assert mine["price_source"] == "config override" and "approximate" in mine["tokenizer"]
    assert (mine["input_usd_per_1m_tokens"], mine["output_usd_per_1m_tokens"]) == (1.0, 2.0)
    with pytest.raises(HarnessError, match="no price known for 'no-such/model'"):
        project(RunDir.open(two_runs["first"]), {"models": [{"name": "no-such/model"}]})


def test_projection_prices_a_provider_prefixed_name_like_the_client_does():
    from harness.costs.projection import quote
    from harness.llm.client import mapped_prices_per_token

    priced = quote({"name": "anthropic/claude-haiku-4-5"})
    assert (priced.input, priced.output) == pytest.approx(mapped_prices_per_token("anthropic/claude-haiku-4-5"))
    assert priced.provider == "anthropic" and priced.cache_write > priced.input  # Anthropic's cache-write premium
    assert "offline price map" in priced.source
