// Package filename turns file names supplied by clients into names that are
// safe to store, show in a user interface and send back in a
// Content-Disposition header.
//
// The result is only ever a display name: spool builds its own storage
// keys and never uses a client's name as a path.
package filename

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxBytes is the longest name Sanitize returns, in bytes: the limit of
// most filesystems for one path component.
const MaxBytes = 255

// Fallback is the name Sanitize returns when nothing usable is left.
const Fallback = "file"

// maxExtBytes is the longest extension (dot included) that Sanitize keeps
// when it must shorten a name; anything longer is probably not one.
const maxExtBytes = 16

// Sanitize returns a version of name that is safe to store and show:
//
//   - only the last element of a path is kept, whether separated by / or \;
//   - invalid UTF-8 becomes U+FFFD; control characters and bidirectional
//     formatting characters (which can disguise an extension) are removed;
//   - every run of white space becomes a single space;
//   - characters reserved on common filesystems (< > : " / \ | ? *) become _;
//   - the name is normalised to Unicode NFC;
//   - spaces and dots are trimmed from both ends, so no name is hidden or
//     means "this directory";
//   - Windows device names (CON, NUL, COM1, ...) get a leading _;
//   - names longer than MaxBytes are cut at a character boundary, keeping
//     the extension when there is a short one.
//
// Sanitize never fails: when nothing usable is left it returns Fallback.
// Sanitize(Sanitize(s)) == Sanitize(s) for every s.
func Sanitize(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.ToValidUTF8(name, "\uFFFD")
	name = cleanRunes(name)
	// Normalise after cleaning: removing a character can bring a letter
	// and a combining mark together, which NFC then composes.
	name = norm.NFC.String(name)
	name = strings.Trim(name, " .")
	if isWindowsDeviceName(name) {
		name = "_" + name
	}
	name = truncate(name, MaxBytes)
	if name == "" {
		return Fallback
	}
	return name
}

// cleanRunes drops control and bidirectional formatting characters,
// collapses white space runs to one space (dropping leading and trailing
// ones) and replaces reserved characters with '_'.
func cleanRunes(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	pendingSpace := false
	for _, r := range name {
		switch {
		case unicode.IsSpace(r):
			pendingSpace = b.Len() > 0
			continue
		case unicode.IsControl(r), isBidiControl(r), r == '\uFEFF':
			continue
		}
		if pendingSpace {
			b.WriteByte(' ')
			pendingSpace = false
		}
		if strings.ContainsRune(`<>:"/\|?*`, r) {
			r = '_'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isBidiControl reports whether r changes the direction of the text around
// it, as used to make "photo\u202Egpj.exe" display as "photoexe.jpg".
func isBidiControl(r rune) bool {
	switch {
	case r == '\u061C', r == '\u200E', r == '\u200F':
		return true
	case r >= '\u202A' && r <= '\u202E':
		return true
	case r >= '\u2066' && r <= '\u2069':
		return true
	}
	return false
}

// isWindowsDeviceName reports whether Windows would take name, with or
// without an extension, for a device rather than a file.
func isWindowsDeviceName(name string) bool {
	stem, _, _ := strings.Cut(name, ".")
	stem = strings.ToUpper(strings.TrimRight(stem, " "))
	switch stem {
	case "CON", "PRN", "AUX", "NUL":
		return true
	}
	if len(stem) == 4 && (strings.HasPrefix(stem, "COM") || strings.HasPrefix(stem, "LPT")) {
		return stem[3] >= '1' && stem[3] <= '9'
	}
	return false
}

// truncate shortens name to at most max bytes, keeping a short extension
// and cutting the rest at a character boundary. It expects a trimmed name
// and returns one.
func truncate(name string, max int) string {
	if len(name) <= max {
		return name
	}
	stem, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= maxExtBytes && !strings.Contains(name[i:], " ") {
		stem, ext = name[:i], name[i:]
	}
	stem = cutAtBoundary(stem, max-len(ext))
	// The stem is not empty: it starts with the name's first character,
	// which is neither a space nor a dot.
	return strings.TrimRight(stem, " .") + ext
}

// cutAtBoundary returns the longest prefix of s of at most n bytes that
// does not end inside a UTF-8 sequence and, where possible, does not
// separate a character from the combining marks that follow it.
func cutAtBoundary(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	for i := n; i > 0; {
		if r, _ := utf8.DecodeRuneInString(s[i:]); !unicode.Is(unicode.M, r) {
			return s[:i]
		}
		_, size := utf8.DecodeLastRuneInString(s[:i])
		i -= size
	}
	return s[:n] // nothing but marks: cut between two of them
}
