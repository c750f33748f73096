"""Command line: parses, composes the config, calls the runner or the report. Heavy imports stay inside the
commands so `harness --help` and `harness report` start fast."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from harness.errors import HarnessError

EPILOG = """examples:
  harness run                                   # the default experiment (experiments/default.yaml)
  harness run experiment=banking77_classic      # another experiment
  harness run experiment=banking77_classic dataset.heldout_size=500 seed=1
  harness run dataset=table dataset.path=denials.csv dataset.label_column=category
  harness resume reports/default/2026-01-31_12-00-00
  harness report reports/default/2026-01-31_12-00-00
  harness list strategy
"""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args) or 0
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; finished items are recorded. Continue with the `harness resume RUN_DIR` "
              "printed at the start", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Prompt or fine-tune? Run competing text-classification strategies on one frozen "
                    "held-out set and report accuracy, latency and cost.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run an experiment (Hydra overrides, e.g. experiment=banking77_classic)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("overrides", nargs="*", help="Hydra overrides: key=value, group=option")
    p.set_defaults(func=_run)

    p = sub.add_parser("resume", help="continue an interrupted run; recorded items are not redone")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=_resume)

    p = sub.add_parser("report", help="rebuild a run's results and report from its records (loads no model)")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=_report)

    p = sub.add_parser("list", help="list the options of a config group (or of all groups)")
    p.add_argument("group", nargs="?", help="dataset, strategy, model, hardware, embedder, pricing, experiment")
    p.set_defaults(func=_list)
    return parser


def _run(args) -> int:
    from harness.config import compose
    from harness.runner import run

    cfg = compose(args.overrides)
    path = run(cfg)
    _done(path)
    return 0


def _resume(args) -> int:
    from omegaconf import OmegaConf

    from harness.runner import run

    config = args.run_dir / "config.yaml"
    if not config.is_file():
        raise HarnessError(f"{args.run_dir}: not a run directory (no config.yaml)")
    path = run(OmegaConf.load(config), resume=args.run_dir)
    _done(path)
    return 0


def _report(args) -> int:
    from harness.report import build

    results = build(args.run_dir)
    print(results[["strategy", "n", "accuracy", "macro_f1", "latency_p95_ms", "cost_per_1k_usd"]]
          .to_string(index=False))
    print(f"report: {args.run_dir / 'report.md'}")
    return 0


def _list(args) -> int:
    from harness.config import GROUPS, known

    groups = [args.group] if args.group else GROUPS
    for group in groups:
        if group not in GROUPS:
            raise HarnessError(f"no config group '{group}'; known: {', '.join(GROUPS)}")
        print(f"{group}: {', '.join(known(group)) or '(none)'}")
    return 0


def _done(path: Path) -> None:
    print(f"run directory: {path}")
    print(f"report: {path / 'report.md'}")


if __name__ == "__main__":
    sys.exit(main())
