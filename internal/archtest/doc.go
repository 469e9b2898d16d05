// Package archtest holds the test that keeps the house's floors: no
// package imports one from a floor above its own (docs/layout.md).
package archtest
