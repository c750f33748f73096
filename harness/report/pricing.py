"""The pricing plan a report is rendered at: the run's own (`pricing` in the manifest's config), else
conf/pricing/default.yaml, with report-time overrides on top (`pricing.monthly_volume=50000`, `pricing=NAME`)."""
from __future__ import annotations

from typing import Sequence

from harness.costs.plan import PricingPlan
from harness.errors import HarnessError, choices


def resolve(manifest, overrides: Sequence[str] = ()) -> PricingPlan:
    """`manifest`: the run's harness.run.manifest.Manifest."""
    from omegaconf import OmegaConf

    base = manifest.config.get("pricing")
    dotlist = []
    for item in overrides:
        key, sep, value = item.lstrip("+").partition("=")
        if key == "pricing" and sep:
            base = load(value)
        elif sep and key.startswith("pricing."):
            dotlist.append(f"{key}={value}")
        else:
            raise HarnessError(f"override '{item}': only pricing can change when a report is re-rendered "
                               "(pricing.KEY=VALUE or pricing=NAME); everything else is fixed by the run's records")
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
