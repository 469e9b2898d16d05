// Package demo is `jutong demo`: the whole bus on fresh databases, every
// source department of the catalog publishing synthetic changes (some of
// them corrupted, refused at the door, half through the HTTP gateway), two
// subscribing departments reading under their grants, and a printed summary
// of what landed where, with the commands to look at it.
package demo
