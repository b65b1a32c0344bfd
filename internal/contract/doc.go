// Package contract holds the names that one part of imagebake writes and
// another reads back later, often from another process or another day: the
// tags a bake puts on what it creates and publishes (read by gc, nightly's
// --if-changed and verify), the names of a build's Azure resources (made by
// bake, parsed by gc), and the stage names that recipes' build.timeouts and
// the default timeouts refer to. Writer and reader import the one spelling
// from here, so neither can drift from the other.
//
// The package has no dependencies inside imagebake, so every other package
// can import it.
package contract
