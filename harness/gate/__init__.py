"""The prompt regression gate: baselines (a run saved small enough to commit), the item-by-item comparison and its
policy, what changed between them, the JUnit and Markdown outputs, and the pytest fixture. Import the
submodules; this package imports nothing itself."""
