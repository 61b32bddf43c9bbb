"""Benchmarks: ``python -m bench`` (``--quick`` for a smoke run, ``--only NAME``).

Each benchmark prints its figures, and writes them to ``bench/results/<name>.json``, as
ratios to a reference measured in the same run: these machines are shared and noisy.
"""
