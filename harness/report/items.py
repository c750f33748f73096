"""Held-out item texts for the confusion and flip lists. Records carry item ids, not texts, so the texts come from
re-reading the run's dataset config (a file read, no model); the held-out hash proves they are the same items."""
from __future__ import annotations

from harness.errors import HarnessError


def heldout_texts(manifest: dict) -> tuple[dict[str, str], str]:
    """({item id: text}, "") or ({}, why the texts are unavailable)."""
    from harness.config import instantiate

    config = manifest.get("config", {}).get("dataset")
    if not config:
        return {}, "item texts unavailable: the manifest records no dataset config"
    try:
        dataset = instantiate(config)
    except (HarnessError, OSError) as exc:
        return {}, f"item texts unavailable: {exc}"
    if dataset.heldout_hash != manifest.get("dataset", {}).get("heldout_hash"):
        return {}, "item texts unavailable: the dataset no longer matches the run's held-out hash"
    return {ex.id: ex.text for ex in dataset.heldout}, ""
