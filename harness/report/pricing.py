"""What a report is rendered at: the pricing plan (the run's own `pricing`, else conf/pricing/default.yaml) and
the decision rule (the run's `decision`, else its defaults), with report-time overrides on top
(`pricing.monthly_volume=50000`, `pricing=NAME`, `decision.metric=macro_f1`)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

from harness.costs.plan import PricingPlan
from harness.errors import HarnessError, choices

METRICS = ("accuracy", "macro_f1")


@dataclass(frozen=True)
class DecisionRule:
    """How the recommendation decides (the root `decision:` config): the metric it ranks by, the margin within
    which a cheaper option counts as no worse (a one-sided non-inferiority test), the significance level, and the
    power at which the report states the smallest difference the held-out set can detect."""

    metric: str = "accuracy"
    margin_points: float = 1.0
    alpha: float = 0.05
    power: float = 0.8

    @classmethod
    def from_config(cls, node) -> "DecisionRule":
        node = dict(node or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(node) - set(known))
        if unknown:
            raise HarnessError(f"no decision key '{unknown[0]}'; known: {', '.join(known)}")
        rule = cls(**{**{f.name: f.default for f in fields(cls)}, **node})
        if rule.metric not in METRICS:
            raise choices("decision.metric", str(rule.metric), METRICS)
        for key, low, high in (("margin_points", 0, 100), ("alpha", 0, 0.5), ("power", 0, 1)):
            value = getattr(rule, key)
            if not isinstance(value, (int, float)) or not low <= value < high or (key != "margin_points" and value == 0):
                raise HarnessError(f"config key 'decision.{key}' must be a number in [{low}, {high}), got {value!r}")
        return rule


def _split(overrides: Sequence[str]) -> tuple[str | None, list[str], list[str]]:
    """(pricing=NAME, pricing.* items, decision.* items); anything else is refused."""
    base, pricing, decision = None, [], []
    for item in overrides:
        key, sep, value = item.lstrip("+").partition("=")
        if key == "pricing" and sep:
            base = value
        elif sep and key.startswith("pricing."):
            pricing.append(f"{key}={value}")
        elif sep and key.startswith("decision."):
            decision.append(f"{key}={value}")
        else:
            raise HarnessError(f"override '{item}': only pricing and the decision rule can change when a report is "
                               "re-rendered (pricing.KEY=VALUE, pricing=NAME, decision.KEY=VALUE); everything else is "
                               "fixed by the run's records")
    return base, pricing, decision


def rule(manifest, overrides: Sequence[str] = ()) -> DecisionRule:
    from omegaconf import OmegaConf

    _, _, dotlist = _split(overrides)
    merged = OmegaConf.merge({"decision": manifest.config.get("decision") or {}}, OmegaConf.from_dotlist(dotlist))
    return DecisionRule.from_config(OmegaConf.to_container(merged, resolve=True)["decision"])


def resolve(manifest, overrides: Sequence[str] = ()) -> PricingPlan:
    """The plan; `manifest`: the run's harness.run.manifest.Manifest."""
    from omegaconf import OmegaConf

    name, dotlist, _ = _split(overrides)
    base = load(name) if name else manifest.config.get("pricing")
    merged = OmegaConf.to_container(OmegaConf.merge({"pricing": base if base is not None else load("default")},
                                                    OmegaConf.from_dotlist(dotlist)), resolve=True)["pricing"]
    # An assumption set at report time is the reader's own figure, no longer the default's source.
    assumptions = dict(merged.get("assumptions") or {})
    for item in dotlist:
        key = item.split("=", 1)[0][len("pricing."):]
        for listed in list(assumptions):
            if key == listed or key.startswith(listed + "."):
                assumptions[listed] = f"set when the report was rendered ({item})"
    return PricingPlan.from_config({**merged, "assumptions": assumptions})


def load(name: str) -> dict:
    from omegaconf import OmegaConf

    from harness.config import conf_dir, known

    path = conf_dir() / "pricing" / f"{name}.yaml"
    if not path.is_file():
        raise choices("pricing", name, known("pricing"))
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
