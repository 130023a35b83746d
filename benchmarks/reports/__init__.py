"""Reports: run folders to a table (table.py), statistics over seeds (aggregate.py), Pareto math (pareto.py),
markdown, plots, the results README, and writing them (write.py)."""
