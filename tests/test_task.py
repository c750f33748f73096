"""The task in the user's words: a dataset's task block reaches every prompt template, user tables come as one
file or as training and held-out files, and a column that looks like a split is never ignored silently."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.config import compose, conf_dir
from harness.data import Task, load_table, plural
from harness.errors import HarnessError
from tests.fake_openai import fake_openai  # noqa: F401  (the fixture)

DOMAIN_WORDS = re.compile(r"customer|intent|banking", re.IGNORECASE)
REASONS = {
    "prior_authorization_missing": "no prior authorization on file for the service",
    "not_medically_necessary": "payer judged the service not medically necessary",
    "out_of_network": "provider is outside the member's network",
    "duplicate_claim": "claim already submitted and processed",
    "timely_filing": "claim filed after the payer's deadline",
    "coverage_terminated": "member's coverage ended before the date of service",
}
TASK = ["dataset.task.item=denial note", "dataset.task.label=denial reason",
        "dataset.task.instructions='You sort insurance claim denial notes by the reason the payer gave.'"]


@pytest.fixture(scope="module")
def denials(tmp_path_factory) -> dict[str, Path]:
    """A small denial-reason table, as a billing team keeps it: one training file, one held-out file."""
    root = tmp_path_factory.mktemp("denials")
    rows = [{"note": f"Claim {i:04d}: {reason} (ref {i * 7 % 97})", "reason": label}
            for label, reason in REASONS.items() for i in range(10)]
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)
    paths = {"train": root / "train.csv", "heldout": root / "heldout.csv", "both": root / "denials.csv"}
    frame.iloc[:42].to_csv(paths["train"], index=False)
    frame.iloc[42:].to_csv(paths["heldout"], index=False)
    frame.assign(split=["train"] * 42 + ["test"] * 18).to_csv(paths["both"], index=False)
    return paths


def _two_files(denials) -> list[str]:
    return ["dataset=table", f"dataset.train_path={denials['train']}", f"dataset.heldout_path={denials['heldout']}",
            "dataset.text_column=note", "dataset.label_column=reason"]


def test_task_words_default_to_neutral_ones_and_plurals_are_regular():
    neutral = Task.from_config(None)
    assert (neutral.item, neutral.label, neutral.described) == ("text", "category", False)
    assert neutral.instructions == "You sort each text into one category."
    assert [plural(w) for w in ("denial note", "category", "box", "day")] == ["denial notes", "categories", "boxes",
                                                                               "days"]
    with pytest.raises(HarnessError, match="no dataset.task key 'items'; known: item, label"):
        Task.from_config({"items": "notes"})


def test_every_prompted_template_speaks_the_tasks_words(denials, fake_openai, tmp_path):  # noqa: F811
    """A run of zero-shot, few-shot and RAG on the denial table: every system prompt and user prompt is in the
    task's words and carries none of the BANKING77 words the templates used to hold."""
    from harness.report import build
    from harness.run.runner import run

    fake_openai.configure(answer=lambda messages: "duplicate_claim")
    cfg = compose(["experiment=default", *_two_files(denials), *TASK, f"output_dir={tmp_path}",
                   "model=openai_compatible", "model.name=fake", "model.litellm_model=openai/fake",
                   f"model.api_base={fake_openai.url}", "llm.cache_dir=null", "~strategies.tfidf_logreg",
                   "~strategies.embed_logreg", "~strategies.embed_knn"])
    path = run(cfg, finish=build)
    manifest = json.loads((path / "manifest.json").read_text())
    records = pd.read_parquet(path / "predictions.parquet")
    assert set(records["strategy"]) == {"zero_shot", "few_shot", "rag"}
    for name, fit in manifest["strategies"].items():
        system = (path / fit["prompt"]["system_prompt_file"]).read_text()
        assert system.startswith("You sort insurance claim denial notes by the reason the payer gave.")
        assert "denial reason" in system and not DOMAIN_WORDS.search(system), name
        for extra in records.loc[records["strategy"] == name, "extra"]:
            user = json.loads(extra)["user_prompt"]
            assert "Denial note: " in user and user.endswith("Denial reason:") and not DOMAIN_WORDS.search(user)
    assert manifest["notes"] == []  # the task is described: no notice


def test_no_template_in_conf_holds_domain_words():
    import yaml

    checked = 0
    for path in sorted((conf_dir() / "strategy").glob("*.yaml")):
        for key, value in yaml.safe_load(path.read_text()).items():
            if key.endswith("_template"):
                checked += 1
                assert not DOMAIN_WORDS.search(value), f"{path.name}: {key}"
                assert "task." in value or value == "{{ text }}", f"{path.name}: {key}"
    assert checked >= 8  # zero_shot, few_shot, rag, hosted_finetune: system and user


def test_the_hosted_fine_tunes_training_file_speaks_the_tasks_words(denials, tmp_path):
    from harness.config import instantiate

    cfg = compose(["experiment=classic", *_two_files(denials), *TASK, "+strategy@strategies.hosted=hosted_finetune"])
    strategy = instantiate(cfg.strategies.hosted, name="hosted")
    rows, _ = strategy.training_file(instantiate(cfg.dataset))
    system = rows[0]["messages"][0]["content"]
    assert "denial reason" in system and not DOMAIN_WORDS.search(system)


def test_two_files_score_every_heldout_row_under_the_default_experiment(denials, tmp_path, capsys):
    """`default` samples BANKING77's held-out set; a user's table is never sampled with it."""
    cfg = compose(["experiment=default", *_two_files(denials)])
    assert cfg.dataset.heldout_size is None
    code = main(["run", "experiment=classic", *_two_files(denials), f"output_dir={tmp_path}",
                 "~strategies.embed_logreg", "~strategies.embed_knn"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "dataset heldout: 18 held-out items" in err  # the size it used, named after the held-out file
    results = pd.read_csv(next(tmp_path.glob("heldout/classic/*/results.csv")))
    assert results["n"].tolist() == [18]


def test_a_table_without_a_task_says_so_once_in_the_run_and_the_report(denials, fake_openai, tmp_path,  # noqa: F811
                                                                        capsys):
    from harness.report import build
    from harness.run.runner import run

    fake_openai.configure(answer=lambda messages: "duplicate_claim")
    cfg = compose(["experiment=default", *_two_files(denials), f"output_dir={tmp_path}", "model=openai_compatible",
                   "model.name=fake", "model.litellm_model=openai/fake", f"model.api_base={fake_openai.url}",
                   "llm.cache_dir=null", "~strategies.few_shot", "~strategies.rag", "~strategies.embed_logreg",
                   "~strategies.embed_knn"])
    path = run(cfg, finish=build)
    assert capsys.readouterr().err.count("The prompts carry no task description") == 1
    page = (path / "report.html").read_text().split('id="manifest"')[0]  # what a reader sees, not the JSON
    assert page.count("The prompts carry no task description") == 1
    assert "You sort each text into one category." in (path / "artifacts/zero_shot/system_prompt.txt").read_text()


def test_a_split_like_column_is_never_ignored(denials, tmp_path):
    with pytest.raises(HarnessError, match=r"column 'split' \(values \['test', 'train'\]\) looks like a "
                                           r"train/held-out split.*dataset.split_column=split.*=false"):
        load_table(path=str(denials["both"]), text_column="note", label_column="reason")
    used = load_table(path=str(denials["both"]), text_column="note", label_column="reason", split_column="split")
    assert (len(used.train), len(used.heldout)) == (42, 18)
    shuffled = load_table(path=str(denials["both"]), text_column="note", label_column="reason",
                          split_column=False, heldout_fraction=0.5)
    assert len(shuffled.heldout) == 30


@pytest.mark.parametrize("overrides, message", [
    (["dataset.train_path=a.csv"], "'dataset.heldout_path' is required with 'dataset.train_path'"),
    (["dataset.path=a.csv", "dataset.heldout_path=b.csv"], "either 'path'"),
    ([], "'dataset.path' is required"),
])
def test_bad_file_settings_are_one_line(overrides, message, capsys, tmp_path):
    assert main(["run", "experiment=classic", "dataset=table", f"output_dir={tmp_path}", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_ids_must_be_unique_across_the_two_files(denials, tmp_path):
    train = pd.read_csv(denials["train"]).assign(id=lambda f: [f"d{i}" for i in range(len(f))])
    heldout = pd.read_csv(denials["heldout"]).assign(id=lambda f: [f"d{i}" for i in range(len(f))])
    train.to_csv(tmp_path / "t.csv", index=False)
    heldout.to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(HarnessError, match="repeats id 'd0'"):
        load_table(train_path=str(tmp_path / "t.csv"), heldout_path=str(tmp_path / "h.csv"), text_column="note",
                   label_column="reason", id_column="id")
