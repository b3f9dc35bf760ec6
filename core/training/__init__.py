"""Training: the K-head trainer, its fast paths and feature storage, CUDA graphs, the evaluation protocol
(search on validation, refit, test), metrics and hyper-parameter grids. Never imports bench, reporting or cli."""
