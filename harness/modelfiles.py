"""Locating model files shipped inside Python packages, and checking them before anything loads them.

A model directory (sentence-transformers, Hugging Face) is pinned file by file, `files: {name: sha256}`:
libraries load its tokenizer, configs and pooling settings as well as its weights, and a tampered
tokenizer.json changes every answer as surely as tampered weights. Print a directory's mapping with
`python -m harness.modelfiles DIR`."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Mapping

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


def hash_dir(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by its path relative to `root` (posix separators)."""
    return {path.relative_to(root).as_posix(): sha256_of(path) for path in sorted(root.rglob("*")) if path.is_file()}


def verify_dir(root: Path, files: Mapping[str, str] | None, *, key: str) -> Path:
    """Refuses a model directory unless every file in it is pinned in `files` (config key `key`) with its
    sha256, and every pinned file is there; None skips the check."""
    if not root.is_dir():
        raise HarnessError(f"model directory {root} does not exist")
    if files is None:
        return root
    actual = hash_dir(root)
    unpinned = sorted(actual.keys() - files.keys())
    if unpinned:
        raise HarnessError(f"model directory {root}: file '{unpinned[0]}' is not pinned in {key}; every file a "
                           "model directory holds is checked before loading: add its sha256 or remove the file")
    for name, expected in sorted(files.items()):
        if name not in actual:
            raise HarnessError(f"model directory {root}: pinned file '{name}' ({key}) does not exist")
        if actual[name] != str(expected).lower():
            raise HarnessError(f"model file {root / name} has sha256 {actual[name]}, expected {expected} ({key}); "
                               f"refusing to load it")
    return root


if __name__ == "__main__":
    for name, digest in hash_dir(resolve(sys.argv[1])).items():
        print(f"  {name}: {digest}")
