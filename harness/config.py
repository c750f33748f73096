"""Composing the Hydra config, and turning Hydra's errors into one line that lists the valid choices."""
from __future__ import annotations

import os
import re
from pathlib import Path

from harness.errors import HarnessError, choices

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("dataset", "strategy", "model", "pricing", "projection", "training_prices", "hardware", "embedder", "gate",
          "executor", "experiment")


def conf_dir() -> Path:
    """The config directory: $HARNESS_CONF, else the project's `conf/` (experiments live in `experiments/`,
    which `conf/experiment` links to)."""
    return Path(os.environ.get("HARNESS_CONF", PROJECT_ROOT / "conf")).resolve()


def known(group: str) -> list[str]:
    folder = conf_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def compose(overrides: list[str] | tuple[str, ...] = ()):
    """The resolved config for `overrides` (Hydra syntax, e.g. `experiment=classic`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    _check_group_choices(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        experiment = cfg.hydra.runtime.choices.get("experiment") or "adhoc"
        with_hydra = cfg
        cfg = OmegaConf.masked_copy(with_hydra, [k for k in with_hydra if k != "hydra"])
        if cfg.get("experiment_name") in (None, "???"):
            cfg.experiment_name = experiment
        OmegaConf.resolve(cfg)
        _check_missing(cfg)
        _check_values(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise HarnessError(_one_line(exc)) from exc
    finally:
        GlobalHydra.instance().clear()
    return cfg


def _check_group_choices(overrides) -> None:
    """Unknown group options named on the command line, reported with the valid names."""
    for item in overrides:
        match = re.fullmatch(r"\+?(\w+)=([\w.-]+)", item)
        if match and match.group(1) in GROUPS:
            group, name = match.groups()
            if name not in known(group) and name != "null":
                raise choices(group, name, known(group))


def _check_missing(cfg) -> None:
    from omegaconf import OmegaConf

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise HarnessError(f"config key '{missing[0]}' is required (set it on the command line, e.g. "
                           f"{missing[0]}=...)")


def _check_values(cfg) -> None:
    """Root keys whose bad values would otherwise surface deep inside a library, in its words (a seed of 'abc'
    as a scikit-learn or numpy message that never says 'seed')."""
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise HarnessError(f"config key 'seed' must be a whole number from 0 to {2**32 - 1}, got {seed!r}")
    share = cfg.get("max_error_share")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise HarnessError(f"config key 'max_error_share' must be a number from 0 to 1 (the share of a strategy's "
                           f"items that may fail before the run fails), got {share!r}")


def _one_line(exc: Exception) -> str:
    text = str(exc)
    bad_override = getattr(exc, "override", None)  # hydra's OverrideParseException
    if bad_override:
        text = f"cannot parse override '{bad_override}': {text.split('See https')[0].strip()}"
    # Hydra: "Could not find 'strategy/rga'" or "Could not load 'strategy/rga'"
    match = re.search(r"Could not (?:find|load) '(\w+)/([^']+)'", text)
    if match and match.group(1) in GROUPS:
        return str(choices(match.group(1), match.group(2), known(match.group(1))))
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def instantiate(node, **kwargs):
    """hydra.utils.instantiate, unwrapping our own errors so the user sees them as written."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, HarnessError):
            raise cause from None
        raise HarnessError(_one_line(exc)) from exc
