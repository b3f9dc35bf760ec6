"""Inputs: feature files, feature sources (data set × backbones), extraction, the feature cache, data sets and
downloads, backbone weights, conversion, safe unpickling and the embedded default data set. Never imports
training, bench or reporting."""
