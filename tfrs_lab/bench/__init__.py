"""Benchmarks (not tests): quality and speed measured side by side with peer methods.

Run ``python -m tfrs_lab.bench.retrieval --data-zip path/to/ml-100k.zip --output bench-out/retrieval.json``.
"""
