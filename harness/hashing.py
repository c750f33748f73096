"""The held-out set's identity: one content hash, computed the same way wherever items come from (a dataset
loader, or the items a run directory stores), so every reader can prove it is looking at the same items."""
from __future__ import annotations

import hashlib
import json
from typing import Iterable


def content_hash(items: Iterable) -> str:
    """sha256 over (id, text, label) of every item, in order; an item's group joins it only when it has one,
    so datasets without groups keep the hash they always had."""
    digest = hashlib.sha256()
    for item in items:
        fields = [item.id, item.text, item.label]
        if getattr(item, "group", None) is not None:
            fields.append(item.group)
        digest.update(json.dumps(fields, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()
