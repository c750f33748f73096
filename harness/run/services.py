"""Shared objects the runner builds once per run and hands to every strategy's `fit`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.costs.hardware import HardwareProfile


@dataclass
class Services:
    hardware: HardwareProfile
    run_dir: Path
    seed: int = 0
    embedder_factory: Callable[[], Any] | None = None
    llm_factory: Callable[[dict], Any] | None = None  # model config -> endpoint (harness.llm.factory.connect)
    _embedder: Any = field(default=None, repr=False)
    _llms: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def embedder(self):
        """The run's one embedder (its cache is what lets strategies share embeddings)."""
        if self._embedder is None:
            self._embedder = self.embedder_factory()
        return self._embedder

    def llm(self, model: dict):
        """The run's one endpoint for `model` (a conf/model config), built on first use and shared by every
        strategy that uses it: one local server per model, one client, one response cache."""
        if model["name"] not in self._llms:
            if self.llm_factory is None:
                from harness.errors import HarnessError

                raise HarnessError(f"model '{model['name']}': this run has no LLM settings (config key 'llm')")
            self._llms[model["name"]] = self.llm_factory(model)
        return self._llms[model["name"]]

    def __getstate__(self) -> dict:
        """A copy in another process (a stage run as a Ray task, harness.run.ray_executor) gets the recipes, the
        factories, and none of what this one started: it loads its own embedder and connects its own endpoints
        (a local model's server in that process), and its `close` stops those."""
        return {**self.__dict__, "_embedder": None, "_llms": {}}

    def close(self) -> None:
        """Stops what the run started (local model servers, client connections), and says how much of the
        embedding work the on-disk cache saved."""
        endpoints, self._llms = list(self._llms.values()), {}
        for endpoint in endpoints:
            endpoint.close()
        if self._embedder is not None:
            embedder, self._embedder = self._embedder, None
            embedder.close()
            if embedder.from_disk:
                import sys

                print(f"embedding cache: {embedder.from_disk:,} of {embedder.from_disk + embedder.computed:,} texts "
                      "read from disk, not embedded again (each strategy still charged their measured time)",
                      file=sys.stderr)

    def artifacts(self, strategy: str) -> Path:
        """A directory for a strategy's saved state (e.g. fine-tuned weights), reused on resume."""
        path = self.run_dir / "artifacts" / strategy
        path.mkdir(parents=True, exist_ok=True)
        return path
