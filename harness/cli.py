"""Command line: parses, composes the config, calls the runner or the report. Heavy imports stay inside the
commands so `harness --help` and `harness report` start fast."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from harness.config import GROUPS
from harness.errors import HarnessError

EPILOG = """examples:
  harness run                                   # the default experiment (experiments/default.yaml)
  harness run experiment=classic      # another experiment
  harness run experiment=classic dataset.heldout_size=500 seed=1
  harness run dataset=table dataset.path=denials.csv dataset.label_column=category
  harness resume reports/default/2026-01-31_12-00-00
  harness resume --retry-errors reports/default/2026-01-31_12-00-00   # redo the items whose calls failed
  harness report reports/default/2026-01-31_12-00-00
  harness report reports/default/2026-01-31_12-00-00 pricing.monthly_volume=50000 pricing.horizon_months=24
  harness compare reports/default/2026-01-31_12-00-00 reports/prompted/2026-02-01_09-00-00
  harness list strategy
  harness hosted-finetune --dry-run               # price a hosted fine-tune; write its training file
"""

REGRESS_EPILOG = """examples:
  harness baseline save reports/default/2026-01-31_12-00-00 support-v1
  harness regress --baseline support-v1 experiment=support      # the project's current prompts and models
  harness regress --baseline support-v1 strategies.zero_shot.closest_cutoff=0.9   # the baseline's, changed
  harness regress --baseline support-v1 --candidate reports/default/2026-02-01_09-00-00
  harness regress --baseline support-v1 --strategy zero_shot gate.max_accuracy_drop_points=1
"""

PLAN_EPILOG = """The items exactly one of the two strategies gets right decide the comparison (McNemar's test sees
only them): their share, the discordance, matters as much as the difference. Without --discordance the plan
assumes the strategies err independently, which usually overstates it; a pilot run's significance.csv gives
the real one, (only_a_correct + only_b_correct) / n_items.

examples:
  harness plan-heldout --accuracy 0.8 --difference 2                 # two points apart, near 80% accuracy
  harness plan-heldout --accuracy 0.8 --difference 2 --discordance 0.1
  harness plan-heldout --accuracy 0.8 --difference 2 --items 300     # and what 300 items can detect
  harness plan-heldout --accuracy 0.9 --difference 2 --one-sided     # a regression gate's drop
"""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # `kill` (a cancelled CI job, a scheduler's time limit) stops a run the way Ctrl-C does: the manifest says
    # "interrupted" and local model servers are stopped, instead of the process dying mid-write as "running".
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.func(args) or 0
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; finished items are recorded. Continue with the `harness resume RUN_DIR` "
              "printed at the start", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Prompt or fine-tune? Run competing text-classification strategies on one frozen "
                    "held-out set and report accuracy, latency and cost.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run an experiment (Hydra overrides, e.g. experiment=classic)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("overrides", nargs="*", help="Hydra overrides: key=value, group=option")
    p.set_defaults(func=_run)

    p = sub.add_parser("resume", help="continue an interrupted run; recorded items are not redone")
    p.add_argument("--retry-errors", action="store_true", help="also redo the items whose latest record is an "
                                                               "error (a failed call), and only those")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=_resume)

    p = sub.add_parser("report", help="rebuild a run's results and report from its records (loads no model)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("overrides", nargs="*", help="re-price or re-decide: pricing.KEY=VALUE, pricing=NAME, decision.KEY=VALUE")
    p.set_defaults(func=_report)

    p = sub.add_parser("compare", help="merge runs made on the same held-out set into one report")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR_OR_OVERRIDE",
                   help="two or more run directories, then optional pricing.KEY=VALUE or decision.KEY=VALUE overrides")
    p.add_argument("--output-dir", type=Path, default=Path("reports"),
                   help="the report goes to OUTPUT_DIR/compare/<UTC timestamp>/ (default: reports)")
    p.set_defaults(func=_compare)

    p = sub.add_parser("list", help="list the options of a config group (or of all groups)")
    p.add_argument("group", nargs="?", help=", ".join(GROUPS))
    p.set_defaults(func=_list)

    p = sub.add_parser("hosted-finetune", help="price an API fine-tune and write its training JSONL (--dry-run), or "
                                               "upload it and start the job (--launch, needs the API key)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="write the training file, print the estimate, upload "
                                                             "nothing")
    mode.add_argument("--launch", action="store_true", help="also upload the file and start the fine-tuning job")
    p.add_argument("--strategy", default="hosted_finetune", help="the hosted fine-tune strategy's name in the "
                                                                 "config (default: hosted_finetune, added if absent)")
    p.add_argument("--out", type=Path, help="the JSONL path (default: OUTPUT_DIR/hosted_finetune/DATASET-MODEL.jsonl)")
    p.add_argument("--date", type=_iso_date, help="judge whether fine-tuning is still open on this day, YYYY-MM-DD "
                                                  "(default: today)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset=table dataset.path=tickets.csv "
                                                "strategies.hosted_finetune.base_model=gpt-4.1-mini-2025-04-14")
    p.set_defaults(func=_hosted_finetune)

    p = sub.add_parser("regress", help="the regression gate: a candidate against a baseline (exit 0 pass, 1 fail, "
                                       "2 error)", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=REGRESS_EPILOG)
    p.add_argument("--baseline", required=True, help="a baseline name under baselines/, or a baseline or run path")
    p.add_argument("--candidate", type=Path, help="compare this existing run instead of running the candidate")
    p.add_argument("--strategy", action="append", default=[], help="run and compare only this strategy "
                                                                   "(repeatable; default: all)")
    p.add_argument("--junit", type=Path, help="JUnit XML output (default: CANDIDATE_RUN/regress/junit.xml)")
    p.add_argument("--summary", type=Path, help="Markdown summary (default: CANDIDATE_RUN/regress/summary.md)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the baseline's config (kept together); "
                                                "gate.KEY=VALUE ones adjust the policy")
    p.set_defaults(func=_regress)

    p = sub.add_parser("baseline", help="save a complete run as a small, committable baseline")
    baseline = p.add_subparsers(dest="baseline_command", required=True)
    p = baseline.add_parser("save", help="write baselines/NAME/ (records with item texts, manifest; no models)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="replace an existing baseline of that name")
    p.set_defaults(func=_baseline_save)

    p = sub.add_parser("plan-heldout", help="how many items must I label for the held-out set? (runs nothing)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=PLAN_EPILOG,
                       description="The held-out items needed to tell two strategies apart, from an assumed "
                                   "accuracy, difference and discordance (McNemar's test; Connor 1987).")
    p.add_argument("--accuracy", type=float, required=True, help="the accuracy you expect, as a fraction (0.8)")
    p.add_argument("--difference", type=float, default=2.0,
                   help="the accuracy difference to detect, in percentage points (default: 2)")
    p.add_argument("--discordance", type=float, help="the share of items exactly one strategy gets right, as a "
                                                     "fraction (default: as if their errors were independent)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default: 0.05)")
    p.add_argument("--power", type=float, default=0.8, help="the chance of detecting the difference when it is "
                                                            "real (default: 0.8)")
    p.add_argument("--one-sided", action="store_true", help="test one direction only, as the regression gate "
                                                            "tests a drop (default: two-sided, as the report)")
    p.add_argument("--items", type=int, help="also say what a held-out set of this many items can detect")
    p.set_defaults(func=_plan_heldout)
    return parser


def _run(args) -> int:
    from harness.config import compose
    from harness.report import build
    from harness.run.runner import run

    cfg = compose(args.overrides)
    path = run(cfg, finish=build)
    _done(path)
    return 0


def _resume(args) -> int:
    from omegaconf import OmegaConf

    from harness.report import build
    from harness.run.directory import RunDir
    from harness.run.manifest import COMPLETE
    from harness.run.runner import run
    from harness.run.state import run_state

    config = args.run_dir / "config.yaml"
    if not config.is_file():
        raise HarnessError(f"{args.run_dir}: not a run directory (no config.yaml)")
    rundir = RunDir.open(args.run_dir)
    with rundir.writing("resume"):  # held from the check to the end, so no other writer slips in between
        state = run_state(rundir)
        # the manifest's own word: holding the lock, this process is the only one that could be finishing it
        if state.status == COMPLETE and not (args.retry_errors and state.errors):
            hint = " (--retry-errors redoes its failed items)" if state.errors else ""
            print(f"{rundir.path}: already {state.describe()}; nothing to resume{hint}")
            return 0
        path = run(OmegaConf.load(config), resume=rundir.path, finish=build, retry_errors=args.retry_errors)
    _done(path)
    return 0


def _report(args) -> int:
    from harness.report import build
    from harness.run.directory import RunDir

    rundir = RunDir.open(args.run_dir)
    with rundir.writing("report"):
        results = build(rundir.path, args.overrides)
    _print_results(results, args.run_dir)
    if (results["run_status"] != "complete").any() or (results["coverage"] < 1).any():
        recorded = ", ".join(f"{r.strategy} {r.coverage:.0%}" for r in results.itertuples())
        print(f"warning: {rundir.path} is {results['run_status'].iloc[0]} (items recorded: {recorded}); every "
              f"output says it is partial and its figures are provisional", file=sys.stderr)
    return 0


def _compare(args) -> int:
    import pandas as pd

    from harness.report.compare import compare

    overrides = [item for item in args.runs if "=" in item]
    path = compare([Path(item) for item in args.runs if "=" not in item], args.output_dir, overrides)
    _print_results(pd.read_csv(path / "results.csv"), path)
    return 0


def _print_results(results, path: Path) -> None:
    print(results[["strategy", "n", "accuracy", "macro_f1", "latency_p95_ms", "cost_per_1k_usd"]]
          .to_string(index=False))
    print(f"report: {path / 'report.html'} (also report.md, summary.pdf)")


def _list(args) -> int:
    from harness.config import GROUPS, known

    groups = [args.group] if args.group else GROUPS
    for group in groups:
        if group not in GROUPS:
            raise HarnessError(f"no config group '{group}'; known: {', '.join(GROUPS)}")
        print(f"{group}: {', '.join(known(group)) or '(none)'}")
    return 0


def _hosted_finetune(args) -> int:
    from harness.config import instantiate
    import datetime as dt

    from harness.strategies.hosted import HostedFineTune, estimate_lines, offer_lines, write_jsonl

    cfg = _with_strategy(args.overrides, args.strategy, "hosted_finetune")
    strategy = instantiate(cfg.strategies[args.strategy], name=args.strategy)
    if not isinstance(strategy, HostedFineTune):
        raise HarnessError(f"strategy '{args.strategy}' is not a hosted fine-tune (its _target_ is "
                           f"{cfg.strategies[args.strategy]._target_})")
    dataset = instantiate(cfg.dataset)
    rows, estimate = strategy.training_file(dataset)
    today = args.date or dt.date.today()
    print("\n".join(offer_lines(strategy.prices, rows, strategy.epochs, today)))
    strategy.check_open(today)
    out = args.out or Path(cfg.output_dir) / "hosted_finetune" / f"{dataset.name}-{estimate.base_model}.jsonl"
    print("\n".join(estimate_lines(estimate, write_jsonl(rows, out))))
    if not args.launch:
        print("dry run: nothing was uploaded")
        return 0
    job = strategy.launch(out)
    print(f"fine-tuning job {job.id}: {job.status}. When it succeeds, run the strategy with "
          f"strategies.{args.strategy}.fine_tuned_model=<the ft: model id the provider reports>")
    return 0


def _iso_date(text: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _with_strategy(overrides: list[str], name: str, option: str):
    """The config with strategy `name`, added from conf/strategy/OPTION.yaml when the experiment lacks it."""
    from harness.config import compose

    first_error = None
    try:
        cfg = compose(overrides)
        if name in cfg.strategies:
            return cfg
    except HarnessError as exc:  # e.g. overrides of strategies.NAME.* that only resolve once the strategy is added
        first_error = exc
    try:
        return compose([f"+strategy@strategies.{name}={option}", *overrides])
    except HarnessError:
        if first_error is not None:
            raise first_error from None  # the problem with what the user wrote, not with our retry
        raise


def _regress(args) -> int:
    from harness.gate import check, outputs

    outcome = check.check(args.baseline, args.overrides, candidate=args.candidate, strategies=args.strategy)
    junit = args.junit or outcome.candidate / "regress" / "junit.xml"
    summary = args.summary or outcome.candidate / "regress" / "summary.md"
    outputs.write(outcome, junit=junit, summary=summary)
    print("\n".join(outputs.verdict_lines(outcome)))
    print(f"{'PASS' if outcome.passed else 'FAIL'}; summary: {summary}; JUnit: {junit}")
    return 0 if outcome.passed else 1


def _baseline_save(args) -> int:
    from harness.gate.baselines import save

    print(f"baseline: {save(args.run_dir, args.name, force=args.force)}")
    return 0


def _plan_heldout(args) -> int:
    from harness.power import plan_lines

    print("\n".join(plan_lines(accuracy=args.accuracy, difference_points=args.difference,
                               discordance=args.discordance, alpha=args.alpha, power=args.power,
                               alternative="one-sided" if args.one_sided else "two-sided", items=args.items)))
    return 0


def _done(path: Path) -> None:
    print(f"run directory: {path}")
    print(f"report: {path / 'report.html'} (also report.md, summary.pdf)")


if __name__ == "__main__":
    sys.exit(main())
