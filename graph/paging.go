package graph

import (
	"reflect"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/internal/upload"
)

// maxPageSize bounds one page of a connection, so one query cannot read a
// user's whole library.
const maxPageSize = 100

func checkPageSize(first, last *int) error {
	for _, n := range []*int{first, last} {
		if n != nil && (*n < 0 || *n > maxPageSize) {
			return upload.Errorf(upload.CodeBadUserInput, "page size must be between 0 and %d, got %d", maxPageSize, *n)
		}
	}
	return nil
}

// maxFilterTerms bounds what one userMedia where input names: its values
// (each of an IN list) and its nested conditions, together. Each value is
// a bound parameter of the statement, and SQLite refuses a statement of
// more than 32,766 (PostgreSQL 65,535): a longer list answered INTERNAL.
const maxFilterTerms = 1000

func checkFilter(where *ent.MediaFileWhereInput) error {
	if n := filterTerms(reflect.ValueOf(where)); n > maxFilterTerms {
		return upload.Errorf(upload.CodeBadUserInput, "the where input names %d values and conditions; at most %d are taken", n, maxFilterTerms)
	}
	return nil
}

// filterTerms counts the values and conditions a where input names. It
// walks entgql's generated struct whole, so a filter the schema gains is
// counted without a change here: a condition (the input or one nested in
// and, or, not) is one, and so is each value given, alone or in a list.
// A flag left false (the generated IsNil and NotNil) names nothing.
func filterTerms(v reflect.Value) int {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return 0
		}
		if v.Elem().Kind() == reflect.Struct {
			return filterTerms(v.Elem())
		}
		return 1
	case reflect.Slice:
		n := 0
		for i := range v.Len() {
			if k := v.Index(i).Kind(); k == reflect.Pointer || k == reflect.Struct {
				n += filterTerms(v.Index(i))
			} else {
				n++
			}
		}
		return n
	case reflect.Struct:
		n := 1
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() && f.Tag.Get("json") != "-" {
				n += filterTerms(v.Field(i))
			}
		}
		return n
	default:
		if v.IsZero() {
			return 0
		}
		return 1
	}
}
