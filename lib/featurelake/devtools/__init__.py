"""Tools for development and exploration: the synthetic data generator, notebook helpers."""
