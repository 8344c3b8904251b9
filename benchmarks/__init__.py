"""Benchmarks for cje-arena: speed and scale, side by side with the reference library (``make bench``)."""
