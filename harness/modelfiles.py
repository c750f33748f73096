"""Locating model files shipped inside Python packages, and checking them before anything loads them."""
from __future__ import annotations

import hashlib
from pathlib import Path

from harness.errors import HarnessError


def resolve(spec: str) -> Path:
    """`pkg:PACKAGE/sub/path` -> a path inside an installed package; anything else is a filesystem path."""
    if spec.startswith("pkg:"):
        package, _, sub = spec[4:].partition("/")
        from importlib.util import find_spec

        found = find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise HarnessError(f"model path '{spec}': package '{package}' is not installed (run `make install`)")
        return Path(list(found.submodule_search_locations)[0]) / sub
    return Path(spec).expanduser()


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str | None) -> Path:
    """Refuses a missing file or one whose sha256 differs from the pinned value (None skips the check)."""
    if not path.exists():
        raise HarnessError(f"model file {path} does not exist")
    if expected:
        actual = sha256_of(path)
        if actual != expected.lower():
            raise HarnessError(f"model file {path} has sha256 {actual}, expected {expected}; refusing to load it")
    return path
