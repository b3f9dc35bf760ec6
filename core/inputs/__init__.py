"""Inputs of a run: data sets and checkpoints, fetched, verified and unpacked into the data root and weights cache."""
