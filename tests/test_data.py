"""Loading, the frozen split and its hash, sub-sampling, taxonomies, and bad-input errors."""
from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from harness.data import load_banking77, load_table, stratified_sample
from harness.errors import HarnessError


@pytest.fixture(scope="module")
def banking():
    return load_banking77()


def test_banking77_official_split(banking):
    assert len(banking.heldout) == 3080
    assert len(banking.train) == 10003  # official train (train + dev files of the package)
    assert len(banking.labels) == 77
    assert {ex.label for ex in banking.heldout} <= set(banking.labels)
    assert len({ex.id for ex in banking.train + banking.heldout}) == len(banking.train) + len(banking.heldout)


def test_same_config_same_hash_and_subsample_is_stratified(banking):
    a = load_banking77(heldout_size=308, seed=3)
    b = load_banking77(heldout_size=308, seed=3)
    c = load_banking77(heldout_size=308, seed=4)
    assert a.heldout_hash == b.heldout_hash
    assert [ex.id for ex in a.heldout] == [ex.id for ex in b.heldout]
    assert a.heldout_hash != c.heldout_hash
    assert a.heldout_hash != banking.heldout_hash
    counts = Counter(ex.label for ex in a.heldout)
    assert len(counts) == 77 and max(counts.values()) - min(counts.values()) <= 2  # 4 per class, +-


def test_hash_changes_with_any_text_or_label(tiny_csv, tmp_path):
    base = load_table(path=str(tiny_csv), split_column="split", id_column="id")
    frame = pd.read_csv(tiny_csv, dtype=str, keep_default_na=False)
    last = frame.index[frame["split"] == "test"][-1]
    other_label = next(lab for lab in frame["label"] if lab != frame.loc[last, "label"])
    for column, value in (("text", frame.loc[last, "text"] + "!"), ("label", other_label)):
        changed = frame.copy()
        changed.loc[last, column] = value
        path = tmp_path / f"changed_{column}.csv"
        changed.to_csv(path, index=False)
        assert load_table(path=str(path), split_column="split", id_column="id").heldout_hash != base.heldout_hash


def test_table_without_split_column_is_a_seeded_stratified_split(tiny_csv, tmp_path):
    frame = pd.read_csv(tiny_csv, dtype=str).drop(columns=["split"])
    for suffix, write in ((".csv", lambda p: frame.to_csv(p, index=False)),
                          (".parquet", lambda p: frame.to_parquet(p, index=False)),
                          (".jsonl", lambda p: frame.to_json(p, orient="records", lines=True))):
        path = tmp_path / f"data{suffix}"
        write(path)
        one = load_table(path=str(path), id_column="id", heldout_fraction=0.25, seed=1)
        two = load_table(path=str(path), id_column="id", heldout_fraction=0.25, seed=1)
        assert one.heldout_hash == two.heldout_hash
        assert len(one.heldout) == 32 and len(one.train) == 96
        assert set(Counter(ex.label for ex in one.heldout).values()) == {4}
    assert load_table(path=str(path), id_column="id", heldout_fraction=0.25, seed=2).heldout_hash != one.heldout_hash


def test_taxonomy_yaml_and_csv(tiny_csv, tmp_path):
    labels = sorted(pd.read_csv(tiny_csv)["label"].unique())
    yaml_file = tmp_path / "tax.yaml"
    yaml_file.write_text("\n".join(f"- label: {lab}\n  description: about {lab}" for lab in labels + ["brand_new"]))
    data = load_table(path=str(tiny_csv), split_column="split", taxonomy=str(yaml_file))
    assert data.descriptions[labels[0]] == f"about {labels[0]}"
    assert "brand_new" in data.labels  # a taxonomy label with no data yet is still a valid answer
    csv_file = tmp_path / "tax.csv"
    pd.DataFrame({"label": labels[1:], "description": "x"}).to_csv(csv_file, index=False)
    with pytest.raises(HarnessError, match=rf"label '{labels[0]}' is not in the taxonomy"):
        load_table(path=str(tiny_csv), split_column="split", taxonomy=str(csv_file))


def test_stratified_sample_smaller_than_class_count_still_works():
    from harness.data import Example

    items = [Example(str(i), f"t{i}", f"c{i % 10}") for i in range(100)]
    picked = stratified_sample(items, 5, seed=0)
    assert len(picked) == 5 and picked == sorted(picked, key=lambda ex: int(ex.id))


@pytest.mark.parametrize("mutate, kwargs, message", [
    (None, {"path": "nope.csv"}, r"nope.csv: no such file"),
    (None, {"text_column": "body"}, r"no column 'body'; columns: id, text, label, split"),
    (lambda f: f.assign(text=f["text"].where(f.index != 5, "  ")), {}, r"row 6, column 'text' is empty"),
    (lambda f: f.assign(label=f["label"].where(f.index != 2, "")), {}, r"row 3, column 'label' is empty"),
    (lambda f: f.assign(label=f["label"].where(f["split"] == "train", "unseen_label")), {},
     r"has label 'unseen_label', which never occurs in the training split"),
    (None, {"heldout_size": 1000}, r"heldout_size=1000 is larger than the 32 held-out items"),
    (lambda f: f.assign(split=f["split"].where(f.index != 0, "dev")), {},
     r"column 'split' has value\(s\) \['dev'\] that are neither"),
    (lambda f: f.assign(id="same"), {}, r"column 'id' repeats id 'same'"),
    (lambda f: f.assign(payer="acme"), {"group_column": "payer"},
     r"column 'payer' \(dataset.group_column\) puts every held-out item in one group"),
])
def test_bad_input_names_the_problem(tiny_csv, tmp_path, mutate, kwargs, message):
    path = tiny_csv
    if mutate is not None:
        path = tmp_path / "bad.csv"
        mutate(pd.read_csv(tiny_csv, dtype=str, keep_default_na=False)).to_csv(path, index=False)
    args = {"path": str(path), "split_column": "split", "id_column": "id", **kwargs}
    with pytest.raises(HarnessError, match=message):
        load_table(**args)


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(HarnessError, match=r"unsupported file type '.xlsx'; known: .csv, .json, .jsonl"):
        load_table(path=str(path))
