"""Prices and the arithmetic on them: hardware time, API price modes, serving, people, retirements, total cost of
ownership over a horizon and the break-even volume between options. Every price carries the source the manifest
names."""
