"""Benchmarks: scripts that print figures (see README.md); `python3 bench/run_all.py` runs them all."""
