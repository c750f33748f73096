"""Prices and the arithmetic on them. Every price carries the source the manifest names."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HardwareProfile:
    """The machine that runs local work (training, local inference), priced per hour."""

    name: str
    usd_per_hour: float
    source: str
    description: str = ""

    def __post_init__(self) -> None:
        if self.usd_per_hour < 0:
            from harness.errors import HarnessError

            raise HarnessError(f"hardware.usd_per_hour must be >= 0, got {self.usd_per_hour}")

    def cost_usd(self, seconds: float) -> float:
        return seconds * self.usd_per_hour / 3600.0


def cost_per_1k(cost_usd_per_item_mean: float) -> float:
    return 1000.0 * cost_usd_per_item_mean
