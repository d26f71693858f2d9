"""Benchmarks (not tests): quality and speed measured side by side with peer methods, in one run.

Run ``python -m tfrs_lab.bench <quality|training|retrieval-index|serving|all> --output-dir bench-out``
(see :mod:`tfrs_lab.bench.__main__`).
"""
