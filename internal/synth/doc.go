// Package synth plays the departments in the demo and the benchmarks: it
// generates realistic change events (valid USCCs and citizen IDs with correct
// check characters, Chongqing division codes, Chinese names and addresses)
// as a stream of creates, updates and deletes over a growing set of entities.
package synth
