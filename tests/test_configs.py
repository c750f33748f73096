"""Every config file composes, and every one with a `_target_` instantiates (constructors do no I/O)."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from harness.config import GROUPS, compose, conf_dir, instantiate, known

ROOT_DEFAULTS = {"dataset", "hardware", "embedder", "experiment"}


def group_files():
    for group in GROUPS:
        for name in known(group):
            yield group, name


@pytest.mark.parametrize("group, name", list(group_files()))
def test_every_config_file_composes_and_instantiates(group, name, tiny_csv, tmp_path):
    extra = [f"output_dir={tmp_path}"]
    if group == "strategy":
        cfg = compose(["~experiment", f"+strategy@strategies.probe={name}", *extra])
        strategy = instantiate(cfg.strategies.probe, name="probe")
        assert strategy.name == "probe"
        return
    if group == "dataset" and name == "table":
        # the default experiment samples 300 held-out items; the tiny table has 32
        extra += [f"dataset.path={tiny_csv}", "dataset.split_column=split", "dataset.heldout_size=null"]
    override = f"{group}={name}" if group in ROOT_DEFAULTS or group in _root_defaults() else f"+{group}={name}"
    cfg = compose([override, *extra])
    node = cfg.get(group)
    if group == "experiment":
        assert cfg.strategies, f"experiment {name} has no strategies"
        for key, strategy_node in cfg.strategies.items():
            assert instantiate(strategy_node, name=key).name == key
    elif node is not None and OmegaConf.is_dict(node) and "_target_" in node:
        assert instantiate(node) is not None


def _root_defaults() -> set[str]:
    root = OmegaConf.load(conf_dir() / "config.yaml")
    return {next(iter(d)) for d in root.defaults if OmegaConf.is_dict(d)}
