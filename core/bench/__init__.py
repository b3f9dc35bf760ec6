"""Bench: the run spec, planning (rows, sources, cells, keys), jobs, the driver, the results store and the
executors that run jobs. Never imports reporting or cli."""
