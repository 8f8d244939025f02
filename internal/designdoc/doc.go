// Package designdoc keeps docs/DESIGN.md and the code that cites it in
// step. It has no code of its own, only TestDesignReferences: every
// "docs/DESIGN.md §<section>" and "invariant <n>" in the repository's
// sources must name a section or invariant the document has, and every
// test the document names must exist, so that neither side can dangle.
package designdoc
