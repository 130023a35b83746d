"""Research studies built on the library: the talk's claims, perf, one-step, fan-out (the benchmark needs none)."""
