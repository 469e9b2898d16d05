// Package bench is `jutong bench`: it measures the bus on this machine and
// prints the figures (publish path, end-to-end pipeline throughput and
// latency with CPU and memory, start-up and memory against the number of
// item topics). docs/benchmarks.md records what it printed.
package bench
