"""Shared objects the runner builds once per run and hands to every strategy's `fit`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.costs import HardwareProfile


@dataclass
class Services:
    hardware: HardwareProfile
    run_dir: Path
    seed: int = 0
    embedder_factory: Callable[[], Any] | None = None
    llm_factory: Callable[[], Any] | None = None
    _embedder: Any = field(default=None, repr=False)
    _llm: Any = field(default=None, repr=False)

    @property
    def embedder(self):
        """The run's one embedder (its cache is what lets strategies share embeddings)."""
        if self._embedder is None:
            self._embedder = self.embedder_factory()
        return self._embedder

    @property
    def llm(self):
        if self._llm is None:
            self._llm = self.llm_factory()
        return self._llm

    def artifacts(self, strategy: str) -> Path:
        """A directory for a strategy's saved state (e.g. fine-tuned weights), reused on resume."""
        path = self.run_dir / "artifacts" / strategy
        path.mkdir(parents=True, exist_ok=True)
        return path
