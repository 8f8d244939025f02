package designdoc_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

const designPath = "docs/DESIGN.md"

var (
	headingRE   = regexp.MustCompile(`(?m)^#{2,4}[ \t]+(.+?)[ \t]*$`)
	invariantRE = regexp.MustCompile(`(?m)^###[ \t]+Invariant[ \t]+(\d+)\b`)
	// A section citation: "DESIGN §Data plane", "docs/DESIGN.md §Data plane".
	sectionRefRE = regexp.MustCompile(`DESIGN(?:\.md)?,?[ \t]*§[ \t]*`)
	// Inside DESIGN.md a bare "§Data plane" cites its own section.
	ownSectionRefRE = regexp.MustCompile(`§[ \t]*`)
	invariantRefRE  = regexp.MustCompile(`(?i)\binvariants?[ \t]+(\d+)`)
	testFuncRE      = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)\w*)\(`)
	namedTestRE     = regexp.MustCompile("`((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]+)")
)

// design is what docs/DESIGN.md offers to cite.
type design struct {
	titles     []string // section titles, in the document's order
	byLength   []string // the same, longest first
	invariants map[int]bool
}

func readDesign(t *testing.T, root string) (design, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, designPath))
	if err != nil {
		t.Fatalf("reading the design document: %v", err)
	}
	text := string(b)
	d := design{invariants: map[int]bool{}}
	for _, m := range headingRE.FindAllStringSubmatch(text, -1) {
		d.titles = append(d.titles, m[1])
	}
	// Longest first, so that a title is not taken for a shorter one that
	// happens to prefix it.
	d.byLength = slices.Clone(d.titles)
	slices.SortStableFunc(d.byLength, func(a, b string) int { return len(b) - len(a) })
	for _, m := range invariantRE.FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[1])
		d.invariants[n] = true
	}
	if len(d.titles) == 0 || len(d.invariants) == 0 {
		t.Fatalf("%s has %d section titles and %d invariants; want some of each", designPath, len(d.titles), len(d.invariants))
	}
	return d, text
}

// hasSection reports whether rest, the text after a "§", starts with a
// section title followed by something that is not part of a word.
func (d design) hasSection(rest string) bool {
	for _, title := range d.byLength {
		after, ok := strings.CutPrefix(rest, title)
		if !ok {
			continue
		}
		r, _ := utf8.DecodeRuneInString(after)
		if after == "" || !(unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return true
		}
	}
	return false
}

// moduleRoot is the directory holding go.mod, above this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// sources returns the repository's files that may cite the design, by
// path relative to root: Go, TypeScript, Markdown and the schema, outside
// dependencies and build output.
func sources(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if e.IsDir() {
			if rel != "." && (strings.HasPrefix(e.Name(), ".") || e.Name() == "node_modules" || rel == "web/dist") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(rel) {
		case ".go", ".ts", ".md", ".graphqls":
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing sources: %v", err)
	}
	return files
}

// uncomment drops a line's indentation and comment marker, so that a
// citation wrapped over two comment lines reads as one.
func uncomment(line string) string {
	line = strings.TrimSpace(line)
	for _, marker := range []string{"//", "*", "#"} {
		if rest, ok := strings.CutPrefix(line, marker); ok {
			return strings.TrimSpace(rest)
		}
	}
	return line
}

// TestDesignReferences checks that every citation of docs/DESIGN.md in
// the repository names a section or invariant it has, and that every
// test it names as a guard exists.
func TestDesignReferences(t *testing.T) {
	root := moduleRoot(t)
	d, designText := readDesign(t, root)

	testFuncs := map[string]bool{}
	sectionRefs, invariantRefs := 0, 0
	for _, rel := range sources(t, root) {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if strings.HasSuffix(rel, "_test.go") {
			for _, m := range testFuncRE.FindAllStringSubmatch(text, -1) {
				testFuncs[m[1]] = true
			}
		}
		refRE := sectionRefRE
		if rel == designPath {
			refRE = ownSectionRefRE
		}
		lines := strings.Split(text, "\n")
		for i, line := range lines {
			// A citation starts on this line and may run onto the next.
			joined := line
			if i+1 < len(lines) {
				joined += " " + uncomment(lines[i+1])
			}
			for _, m := range refRE.FindAllStringIndex(joined, -1) {
				if m[0] >= len(line) {
					continue
				}
				rest := joined[m[1]:]
				if strings.HasPrefix(rest, "<") {
					continue // a placeholder, as in "§<section title>"
				}
				sectionRefs++
				if !d.hasSection(rest) {
					t.Errorf("%s:%d cites %q, but %s has no such section; its sections are %q",
						rel, i+1, strings.TrimSpace(joined[m[0]:min(len(joined), m[1]+30)]), designPath, d.titles)
				}
			}
			for _, m := range invariantRefRE.FindAllStringSubmatchIndex(joined, -1) {
				if m[0] >= len(line) {
					continue
				}
				invariantRefs++
				n, _ := strconv.Atoi(joined[m[2]:m[3]])
				if !d.invariants[n] {
					t.Errorf("%s:%d cites invariant %d, but %s has no invariant %d", rel, i+1, n, designPath, n)
				}
			}
		}
	}
	// Citations exist today; finding none means this test stopped looking.
	if sectionRefs == 0 || invariantRefs == 0 {
		t.Fatalf("found %d section and %d invariant citations; want some of each", sectionRefs, invariantRefs)
	}

	for _, m := range namedTestRE.FindAllStringSubmatch(designText, -1) {
		if !testFuncs[m[1]] {
			t.Errorf("%s names %s, but no _test.go file defines it", designPath, m[1])
		}
	}
}
