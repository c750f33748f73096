"""Strategy families. Each module holds one family; every family implements `harness.strategies.base.Strategy`."""
