"""hosted_finetune: the training cost estimate, the dry run's JSONL, the launch refusing without a key, and
inference through the LLM client against the fake OpenAI-compatible server."""
from __future__ import annotations

import json

import pytest

from harness.strategies.base import StageInfo

from harness.cli import main
from harness.config import compose, instantiate
from harness.errors import HarnessError
from harness.run.services import Services
from harness.strategies.hosted import TrainingEstimate, count_tokens, training_closed
from tests.conftest import tiny_overrides
from tests.fake_openai import fake_openai  # noqa: F401  (the fixture)

ADD = "+strategy@strategies.hosted_finetune=hosted_finetune"
OPEN_DAY = "2026-12-01"  # gpt-4o-mini's fine-tuning still takes new jobs (until 2027-01-06); gpt-4.1-nano's retired


def _strategy(tiny_csv, tmp_path, *extra):
    cfg = compose(["experiment=classic", *tiny_overrides(tiny_csv, tmp_path), ADD, *extra])
    return cfg, instantiate(cfg.strategies.hosted_finetune, name="hosted_finetune"), instantiate(cfg.dataset)


def test_cost_is_tokens_times_epochs_times_price():
    estimate = TrainingEstimate("gpt-4o-mini-2024-07-18", n_examples=1000, tokens_per_epoch=250_000, epochs=4,
                                training_usd_per_1m_tokens=3.0, source="test")
    assert estimate.cost_usd == pytest.approx(3.00)  # 250,000 x 4 = 1M tokens at $3 per 1M


def test_estimate_counts_the_training_file_with_the_models_tokenizer(tiny_csv, tmp_path):
    import litellm

    cfg, strategy, dataset = _strategy(tiny_csv, tmp_path, "strategies.hosted_finetune.epochs=2")
    rows, estimate = strategy.training_file(dataset)
    by_hand = sum(litellm.token_counter(model="gpt-4o-mini-2024-07-18", messages=r["messages"]) for r in rows)
    assert estimate.n_examples == len(dataset.train) == len(rows)
    assert estimate.tokens_per_epoch == by_hand == count_tokens(rows, "gpt-4o-mini-2024-07-18")
    # conf/training_prices/default.yaml: gpt-4o-mini-2024-07-18 trains at $3.00 per 1M tokens
    assert estimate.training_usd_per_1m_tokens == 3.0
    assert estimate.cost_usd == pytest.approx(by_hand * 2 * 3.0 / 1e6)
    assert "platform.openai.com" in estimate.source


def test_train_per_class_shrinks_the_file(tiny_csv, tmp_path):
    _, strategy, dataset = _strategy(tiny_csv, tmp_path, "strategies.hosted_finetune.train_per_class=3")
    rows, estimate = strategy.training_file(dataset)
    assert len(rows) == 3 * len(dataset.labels) == estimate.n_examples


def test_dry_run_writes_chat_fine_tuning_jsonl(tiny_csv, tmp_path, capsys):
    out = tmp_path / "train.jsonl"
    assert main(["hosted-finetune", "--dry-run", "--date", OPEN_DAY, "--out", str(out), "experiment=classic",
                 *tiny_overrides(tiny_csv, tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "nothing was uploaded" in printed and "training cost:" in printed and "$" in printed
    _, _, dataset = _strategy(tiny_csv, tmp_path)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(dataset.train)
    for line, example in zip(lines, dataset.train):
        messages = json.loads(line)["messages"]
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        assert messages[1]["content"] == example.text
        assert messages[2]["content"] == example.label and example.label in dataset.labels
        assert all(isinstance(m["content"], str) and m["content"] for m in messages)


def test_launch_without_a_key_fails_cleanly_naming_the_variable(tiny_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = main(["hosted-finetune", "--launch", "--date", OPEN_DAY, "--out", str(tmp_path / "t.jsonl"), "experiment=classic",
                 *tiny_overrides(tiny_csv, tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "OPENAI_API_KEY" in err and "nothing was uploaded" in err


def test_launch_failure_never_shows_the_key(tiny_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-test-key")
    # nothing listens on port 9 of this host: the upload fails at once
    _, strategy, dataset = _strategy(tiny_csv, tmp_path, "strategies.hosted_finetune.api_base=http://127.0.0.1:9/v1")
    rows, _ = strategy.training_file(dataset)
    from harness.strategies.hosted import write_jsonl

    with pytest.raises(HarnessError) as info:
        strategy.launch(write_jsonl(rows, tmp_path / "t.jsonl"))
    assert "fine-tuning job failed" in str(info.value) and "sk-secret-test-key" not in str(info.value)


def test_a_run_needs_the_fine_tuned_model_id(tiny_csv, tmp_path):
    cfg, strategy, dataset = _strategy(tiny_csv, tmp_path)
    with pytest.raises(HarnessError, match="fine_tuned_model"):
        strategy.fit(dataset, Services(hardware=instantiate(cfg.hardware), run_dir=tmp_path))


def test_predicts_through_the_client_at_the_fine_tuned_models_prices(tiny_csv, tmp_path, fake_openai, monkeypatch):
    from harness.llm.factory import connect

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    cfg, strategy, dataset = _strategy(
        tiny_csv, tmp_path, "strategies.hosted_finetune.fine_tuned_model=openai/ft:gpt-4o-mini-2024-07-18:org::x1",
        f"strategies.hosted_finetune.api_base={fake_openai.url}")
    gold = {ex.text: ex.label for ex in dataset.heldout}
    fake_openai.configure(answer=lambda messages: gold[messages[-1]["content"]])
    hardware = instantiate(cfg.hardware)
    services = Services(hardware=hardware, run_dir=tmp_path,
                        llm_factory=lambda model: connect(model, {"cache_dir": None}, hardware=hardware,
                                                          run_dir=tmp_path))
    strategy.fit(dataset, services)
    try:
        predictions = list(strategy.predict(dataset.heldout))
    finally:
        services.close()
    assert len(predictions) == len(dataset.heldout) and all(p.correct for p in predictions)
    p = predictions[0]
    assert p.cost_usd == pytest.approx(p.prompt_tokens * 0.30e-6 + p.completion_tokens * 1.20e-6)
    assert strategy.fit_cost_usd_ == pytest.approx(strategy.estimate_.cost_usd) and strategy.fit_cost_usd_ > 0
    record = strategy.fit_record(wall_seconds=1.0, hardware=hardware, n_train=len(dataset.train),
                                 stage=StageInfo(base="hosted_finetune"))
    assert record.family == "trained" and record.billing == "api"
    assert record.details["training_tokens_per_epoch"] == strategy.estimate_.tokens_per_epoch
    assert record.fit_cost_usd == pytest.approx(strategy.estimate_.cost_usd)
    # the fine-tuned model sees what it was trained on: the training file's system prompt, then the item
    body = fake_openai.bodies[0]["messages"]
    rows, _ = strategy.training_file(dataset)
    assert body[0] == rows[0]["messages"][0] and body[1]["role"] == "user"


def test_a_key_file_replaces_the_default_key_variable(tiny_csv, tmp_path):
    """With api_key_file set, predicting must not also insist on OPENAI_API_KEY (the client refuses both)."""
    _, strategy, _ = _strategy(tiny_csv, tmp_path, "strategies.hosted_finetune.api_key_file=key.txt")
    assert strategy.model["api_key_file"] == "key.txt" and strategy.model["api_key_env"] is None
    _, default, _ = _strategy(tiny_csv, tmp_path)
    assert default.model["api_key_env"] == "OPENAI_API_KEY"


def test_dry_run_lists_every_provider_with_its_source_and_refuses_a_closed_base_model(tiny_csv, tmp_path, capsys):
    out = tmp_path / "nano.jsonl"
    code = main(["hosted-finetune", "--dry-run", "--date", OPEN_DAY, "--out", str(out), "experiment=classic",
                 *tiny_overrides(tiny_csv, tmp_path), "strategies.hosted_finetune.base_model=gpt-4.1-nano-2025-04-14"])
    printed, err = capsys.readouterr()
    _, strategy, _ = _strategy(tiny_csv, tmp_path)
    for model, price in strategy.prices.items():  # every entry, with its provider, training price and source
        [line] = [line for line in printed.splitlines() if f" {model}: " in line]
        assert line.startswith(f"  {price['provider']} ") and f"training ${price['training_usd_per_1m_tokens']:g}" in line
        assert price["source"] in line and ("not offered" in line) == (model in {"gpt-4.1-nano-2025-04-14",
                                                                              "gpt-3.5-turbo-0125"})
    assert "gpt-4o-mini-2024-07-18: training $3" in printed and "this file:" in printed
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert ("base_model 'gpt-4.1-nano-2025-04-14' cannot be fine-tuned: its fine-tuned models retired on 2026-10-23"
            in err and "still open on 2026-12-01: gpt-4.1-2025-04-14, gpt-4.1-mini-2025-04-14" in err)
    assert not out.exists()  # refused before anything was written


def test_fine_tuning_closes_on_the_first_of_new_jobs_closing_and_retirement():
    import datetime as dt

    price = {"new_jobs_close": "2027-01-06", "availability_source": "deprecations page", "retires": "2027-01-14",
             "retirement_source": "litellm"}
    assert training_closed("m", price, dt.date(2027, 1, 5)) is None
    assert training_closed("m", price, dt.date(2027, 1, 6)) == ("fine-tuning it closed to new jobs on 2027-01-06 "
                                                               "(deprecations page)")
    assert training_closed("m", {**price, "new_jobs_close": None}, dt.date(2027, 1, 6)) is None
    assert "retired on 2027-01-14" in training_closed("m", {**price, "new_jobs_close": None}, dt.date(2027, 2, 1))


def test_retirement_dates_agree_with_litellms_price_map(tiny_csv, tmp_path):
    import litellm

    _, strategy, _ = _strategy(tiny_csv, tmp_path)
    for model, price in strategy.prices.items():
        entry = litellm.model_cost[f"ft:{model}"]
        assert price["retires"] == entry["deprecation_date"], model
        assert price["input_usd_per_1m_tokens"] == pytest.approx(entry["input_cost_per_token"] * 1e6), model
