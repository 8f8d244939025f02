// Package bench measures spool's data plane against a bare Go handler that
// writes the same chunks to disk, in one run, so the ratio between them
// means something on a noisy machine. It holds no library code: the
// benchmark is BenchmarkDataPlane (run it with `make bench`), the baseline
// is the bareserver command, and docs/BENCHMARKS.md records the results.
package bench
