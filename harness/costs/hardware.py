"""The machine that runs local work, priced per hour: what training and self-hosted inference cost."""
from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError


@dataclass(frozen=True)
class HardwareProfile:
    """The machine that runs local work (training, local inference), priced per hour."""

    name: str
    usd_per_hour: float
    source: str
    description: str = ""

    def __post_init__(self) -> None:
        if self.usd_per_hour < 0:
            raise HarnessError(f"hardware.usd_per_hour must be >= 0, got {self.usd_per_hour}")

    def cost_usd(self, seconds: float) -> float:
        return seconds * self.usd_per_hour / 3600.0
