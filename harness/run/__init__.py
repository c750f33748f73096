"""Running an experiment: the plan (plain, sweep, scenario), the runner, the services it shares between
strategies, and the run directory with its typed manifest. Import the submodules; this package imports nothing,
so readers of a run directory (the report, the gate) do not load the runner."""
