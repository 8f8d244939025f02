// Package contentrange parses and formats the Content-Range header of a
// chunk PUT (RFC 9110, section 14.4). It is a package of its own, with no
// dependency beyond the standard library, so that its fuzz targets build
// in seconds: `go test -fuzz` instruments every package the target imports.
package contentrange

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Range is a parsed Content-Range header (RFC 9110, section 14.4)
// with the unit "bytes".
//
// First and Last are the positions of the first and last byte sent,
// inclusive; both are -1 in the status-query form "bytes */total", which
// sends no bytes. Total is the size of the whole upload, or -1 if unknown
// ("bytes first-last/*").
type Range struct {
	First, Last, Total int64
}

// Len returns the number of bytes the range covers: Last-First+1, or 0 for
// a status query.
func (r Range) Len() int64 {
	if r.First < 0 {
		return 0
	}
	return r.Last - r.First + 1
}

// String formats r as a Content-Range header value, the inverse of
// Parse.
func (r Range) String() string {
	total := "*"
	if r.Total >= 0 {
		total = strconv.FormatInt(r.Total, 10)
	}
	if r.First < 0 {
		return "bytes */" + total
	}
	return fmt.Sprintf("bytes %d-%d/%s", r.First, r.Last, total)
}

// Parse parses a Content-Range header value of the form
// "bytes first-last/total", "bytes first-last/*" (total unknown) or
// "bytes */total" (a query for what has been received).
//
// It returns an error saying what is wrong if the unit is not "bytes"
// (compared case-insensitively, as RFC 9110 asks), the parts are not
// separated by exactly one space, '-' and '/', a number has a sign, a
// space or another non-digit or does not fit in an int64, first is
// greater than last, last is not less than a known total, or anything
// follows the total. Surrounding white space, which HTTP does not count
// as part of a header value, is ignored.
func Parse(h string) (Range, error) {
	unit, rest, ok := strings.Cut(strings.Trim(h, " \t"), " ")
	if !ok {
		return Range{}, errors.New(`invalid Content-Range: want "bytes first-last/total" or "bytes */total"`)
	}
	if !strings.EqualFold(unit, "bytes") {
		return Range{}, fmt.Errorf(`invalid Content-Range: unit %.40q is not "bytes"`, unit)
	}
	rng, totalText, ok := strings.Cut(rest, "/")
	if !ok {
		return Range{}, errors.New(`invalid Content-Range: missing "/total"`)
	}

	r := Range{First: -1, Last: -1, Total: -1}
	if totalText != "*" {
		total, err := parsePosition("total length", totalText)
		if err != nil {
			return Range{}, err
		}
		r.Total = total
	}

	if rng == "*" {
		if r.Total < 0 {
			return Range{}, errors.New(`invalid Content-Range: "bytes */*" gives neither a range nor a total`)
		}
		return r, nil
	}
	firstText, lastText, ok := strings.Cut(rng, "-")
	if !ok {
		return Range{}, fmt.Errorf("invalid Content-Range: range %.40q is not first-last", rng)
	}
	var err error
	if r.First, err = parsePosition("first byte position", firstText); err != nil {
		return Range{}, err
	}
	if r.Last, err = parsePosition("last byte position", lastText); err != nil {
		return Range{}, err
	}
	switch {
	case r.First > r.Last:
		return Range{}, fmt.Errorf("invalid Content-Range: first byte position %d is after last byte position %d", r.First, r.Last)
	case r.Total >= 0 && r.Last >= r.Total:
		return Range{}, fmt.Errorf("invalid Content-Range: last byte position %d is not less than total length %d", r.Last, r.Total)
	case r.Last == math.MaxInt64:
		// Only possible with an unknown total; Len would overflow.
		return Range{}, fmt.Errorf("invalid Content-Range: last byte position %d is too large", r.Last)
	}
	return r, nil
}

// parsePosition parses a non-negative decimal number of 1 or more digits
// without sign, the only form RFC 9110 allows.
func parsePosition(what, s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("invalid Content-Range: missing %s", what)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("invalid Content-Range: %s %.40q is not a decimal number", what, s)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil { // only out of range is left
		return 0, fmt.Errorf("invalid Content-Range: %s %.40q is too large: at most %d", what, s, int64(math.MaxInt64))
	}
	return n, nil
}
