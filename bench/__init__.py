"""metalstream benchmarks: side-by-side ratios against the alternatives, measured in one run (see README.md)."""
