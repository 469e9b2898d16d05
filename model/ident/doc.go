// Package ident checks and generates the identifiers that key the base
// databases: the 18-character citizen ID number (GB 11643-1999), the
// 18-character unified social credit code (GB 32100-2015) and the 6-digit
// administrative division code (GB/T 2260).
//
// Check functions return nil or an *Error naming the rule broken, so that a
// rejected record can say exactly why. Generators (for synthetic data and
// tests) always produce identifiers that pass the checks.
package ident
