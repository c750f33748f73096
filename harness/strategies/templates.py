"""Prompt templates (Jinja2) and what they see. Templates hold no domain words of their own: what an item and a
label are called, and the instructions, come from the dataset's task block (`task`), the label list and
descriptions from its taxonomy. Shared by the prompted strategies and the hosted fine-tune's training file, so
the system prompt a model is trained on is the one it is asked with."""
from __future__ import annotations

import hashlib


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def compile_template(source: str, key: str):
    from jinja2 import Environment, StrictUndefined, TemplateSyntaxError

    from harness.errors import HarnessError

    env = Environment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise HarnessError(f"strategy config key '{key}': Jinja2 syntax error at line {exc.lineno}: "
                           f"{exc.message}") from exc


def render(template, key: str, **context) -> str:
    from jinja2 import UndefinedError

    from harness.errors import HarnessError

    try:
        return template.render(**context).strip()
    except UndefinedError as exc:
        raise HarnessError(f"strategy config key '{key}': {exc.message}; available: "
                           f"{', '.join(sorted(context))}") from exc


def dataset_context(train) -> dict:
    """What every template sees of the dataset: `task` (item, label, instructions, item_plural, label_plural),
    `labels` (the label list) and `descriptions` (label -> text, empty without a taxonomy)."""
    return {"task": train.task, "labels": list(train.labels), "descriptions": dict(train.descriptions)}


def system_prompt(source: str, train, **context) -> str:
    """A system template rendered for `train` (plus strategy-specific `context`, e.g. fixed exemplars)."""
    return render(compile_template(source, "system_template"), "system_template", **dataset_context(train),
                  **context)
