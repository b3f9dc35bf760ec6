"""Executors: where a run's training jobs execute (``local``: this process; ``ray``: tasks on a Ray cluster)."""
