package app_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/eventually"
)

const userMediaOp = `query($first: Int, $after: Cursor, $last: Int, $before: Cursor, $where: MediaFileWhereInput, $orderBy: MediaFileOrder) {
	userMedia(first: $first, after: $after, last: $last, before: $before, where: $where, orderBy: $orderBy) {
		totalCount
		pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
		edges { cursor node { id mediaType fileSize url } }
	} }`

type mediaPage struct {
	TotalCount int `json:"totalCount"`
	PageInfo   struct {
		HasNextPage     bool    `json:"hasNextPage"`
		HasPreviousPage bool    `json:"hasPreviousPage"`
		StartCursor     *string `json:"startCursor"`
		EndCursor       *string `json:"endCursor"`
	} `json:"pageInfo"`
	Edges []struct {
		Cursor string `json:"cursor"`
		Node   media  `json:"node"`
	} `json:"edges"`
}

func (p mediaPage) ids() []string {
	ids := []string{}
	for _, e := range p.Edges {
		ids = append(ids, e.Node.ID)
	}
	return ids
}

func (s *spool) userMedia(token string, vs map[string]any) mediaPage {
	s.t.Helper()
	var out struct{ UserMedia mediaPage }
	s.mustGQL(token, userMediaOp, vs, &out)
	return out.UserMedia
}

func TestUserMediaPagination(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	alice, bob := s.token("alice"), s.token("bob")

	// Seven media, oldest first: six images, the fourth a video.
	var created []media
	for i := range 7 {
		if i == 3 {
			created = append(created, s.uploadFile(alice, "clip.mp4", "video/mp4", fileBytes("video/mp4", 5000, uint64(40+i))))
			continue
		}
		created = append(created, s.uploadFile(alice, "img.png", "image/png", fileBytes("image/png", 1000+i, uint64(40+i))))
	}
	var newestFirst []string
	for i := len(created) - 1; i >= 0; i-- {
		newestFirst = append(newestFirst, created[i].ID)
	}

	// Forward, three at a time.
	var got []string
	var after any
	for pages := 1; ; pages++ {
		p := s.userMedia(alice, vars("first", 3, "after", after))
		if p.TotalCount != 7 {
			t.Errorf("page %d: got totalCount %d, want 7", pages, p.TotalCount)
		}
		if len(p.Edges) > 3 {
			t.Fatalf("page %d: got %d edges, want at most 3", pages, len(p.Edges))
		}
		got = append(got, p.ids()...)
		if !p.PageInfo.HasNextPage {
			break
		}
		if pages == 5 || p.PageInfo.EndCursor == nil {
			t.Fatalf("paging did not end: %d pages, end cursor %v", pages, p.PageInfo.EndCursor)
		}
		after = *p.PageInfo.EndCursor
	}
	if !slices.Equal(got, newestFirst) {
		t.Errorf("paging forward: got %v, want %v (all seven, newest first, no repeats)", got, newestFirst)
	}

	// Backward from the end: the last page, then the one before it.
	last := s.userMedia(alice, vars("last", 3))
	if want := newestFirst[4:]; !slices.Equal(last.ids(), want) || !last.PageInfo.HasPreviousPage {
		t.Errorf("last 3: got %v (previous page %v), want %v with a previous page", last.ids(), last.PageInfo.HasPreviousPage, want)
	}
	prev := s.userMedia(alice, vars("last", 3, "before", *last.PageInfo.StartCursor))
	if want := newestFirst[1:4]; !slices.Equal(prev.ids(), want) {
		t.Errorf("last 3 before that: got %v, want %v", prev.ids(), want)
	}
	asc := s.userMedia(alice, vars("first", 2, "orderBy", map[string]any{"field": "CREATED_AT", "direction": "ASC"}))
	if want := []string{created[0].ID, created[1].ID}; !slices.Equal(asc.ids(), want) {
		t.Errorf("oldest first: got %v, want %v", asc.ids(), want)
	}

	// Filters.
	videos := s.userMedia(alice, vars("first", 10, "where", map[string]any{"mediaType": "VIDEO"}))
	if !slices.Equal(videos.ids(), []string{created[3].ID}) || videos.TotalCount != 1 || videos.Edges[0].Node.MediaType != "VIDEO" {
		t.Errorf("videos: got %v (total %d), want only %s", videos.ids(), videos.TotalCount, created[3].ID)
	}

	// bob sees none of it, however he asks.
	for _, where := range []map[string]any{
		nil,
		{"idIn": newestFirst},
		{"or": []any{map[string]any{"id": created[0].ID}, map[string]any{"mediaType": "IMAGE"}}},
		{"not": map[string]any{"id": "med_none"}},
	} {
		if p := s.userMedia(bob, vars("first", 10, "where", where)); p.TotalCount != 0 || len(p.Edges) != 0 {
			t.Errorf("bob's userMedia where %v: got %d items (total %d), want none", where, len(p.Edges), p.TotalCount)
		}
	}

	// Deleting one takes it off the list and gives its bytes back.
	gone := created[5]
	before := s.me(alice).UsedBytes
	var del struct{ DeleteMedia string }
	s.mustGQL(alice, opDeleteMedia, vars("id", gone.ID), &del)
	if del.DeleteMedia != gone.ID {
		t.Errorf("deleteMedia: got %q, want %q", del.DeleteMedia, gone.ID)
	}
	all := s.userMedia(alice, vars("first", 10))
	if all.TotalCount != 6 || slices.Contains(all.ids(), gone.ID) {
		t.Errorf("after delete: got %v (total %d), want 6 without %s", all.ids(), all.TotalCount, gone.ID)
	}
	if got, want := s.me(alice).UsedBytes, before-gone.FileSize; got != want {
		t.Errorf("usedBytes after delete: got %d, want %d", got, want)
	}
	if resp, _ := get(t, gone.URL, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("download of a deleted media: got %d, want 404", resp.StatusCode)
	}
	s.wantCode(alice, opDeleteMedia, vars("id", gone.ID), "NOT_FOUND")
	s.wantCode(alice, opNode, vars("id", gone.ID), "NOT_FOUND")
	// The others still download.
	if resp, _ := get(t, created[4].URL, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("download of a kept media: got %d, want 200", resp.StatusCode)
	}
}

// userMedia(where: {contentHash…}) finds the caller's files with some
// bytes, READY once processing has hashed them, and never another user's:
// what a client asks before sending a file again (spool upload does).
func TestUserMediaByContentHash(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	alice, bob := s.token("alice"), s.token("bob")
	data, other := fileBytes("image/png", 3000, 61), fileBytes("image/png", 3000, 62)
	sum, otherSum := sha256hex(data), sha256hex(other)
	a := s.uploadFile(alice, "a.png", "image/png", data)
	aOther := s.uploadFile(alice, "b.png", "image/png", other)
	b := s.uploadFile(bob, "a.png", "image/png", data)
	for _, w := range []struct {
		token string
		total int
	}{{alice, 2}, {bob, 1}} {
		eventually.Holds(t, "every media READY", func() bool {
			p := s.userMedia(w.token, vars("first", 10, "where", map[string]any{"status": "READY", "contentHashNotNil": true}))
			return p.TotalCount == w.total
		})
	}

	for _, c := range []struct {
		name  string
		token string
		where map[string]any
		want  []string
	}{
		{"alice's by hash", alice, map[string]any{"contentHash": sum}, []string{a.ID}},
		{"bob's by the same hash", bob, map[string]any{"contentHash": sum}, []string{b.ID}},
		{"several hashes, READY", alice, map[string]any{"contentHashIn": []string{sum, otherSum}, "status": "READY"}, []string{aOther.ID, a.ID}},
		{"another user's only", bob, map[string]any{"contentHash": otherSum}, []string{}},
		{"the hash in capitals: stored lowercase", alice, map[string]any{"contentHash": strings.ToUpper(sum)}, []string{}},
		{"in capitals, folded", alice, map[string]any{"contentHashEqualFold": strings.ToUpper(sum)}, []string{a.ID}},
		{"not a hash", alice, map[string]any{"contentHash": "not a hash"}, []string{}},
		{"empty", alice, map[string]any{"contentHash": ""}, []string{}},
	} {
		p := s.userMedia(c.token, vars("first", 10, "where", c.where))
		if !slices.Equal(p.ids(), c.want) || p.TotalCount != len(c.want) {
			t.Errorf("%s: got %v (total %d), want %v", c.name, p.ids(), p.TotalCount, c.want)
		}
	}

	// A deleted file is no longer found.
	var del struct{ DeleteMedia string }
	s.mustGQL(alice, opDeleteMedia, vars("id", a.ID), &del)
	if p := s.userMedia(alice, vars("first", 10, "where", map[string]any{"contentHash": sum})); p.TotalCount != 0 {
		t.Errorf("after deleting %s: got %v, want none", a.ID, p.ids())
	}
}

// A where input too long for one statement is refused as bad input, not
// run: 40,000 short hashes, past SQLite's 32,766 bound parameters, were
// an INTERNAL error. The bound counts values and nested conditions
// together, whichever filter names them.
func TestUserMediaFilterBounded(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	alice := s.token("alice")
	m := s.uploadFile(alice, "a.png", "image/png", fileBytes("image/png", 1000, 63))
	values := func(n int) []string {
		v := make([]string, n)
		for i := range v {
			v[i] = fmt.Sprintf("%x", i)
		}
		return v
	}
	conditions := func(n int) []any {
		c := make([]any, n)
		for i := range c {
			c[i] = map[string]any{"id": m.ID}
		}
		return c
	}
	// The input itself is a condition: 999 values more make 1,000.
	for _, c := range []struct {
		name  string
		where map[string]any
		ok    bool
	}{
		{"999 values", map[string]any{"idIn": append(values(998), m.ID)}, true},
		{"1,000 values", map[string]any{"idIn": values(1000)}, false},
		{"40,000 values", map[string]any{"contentHashIn": values(40000)}, false},
		{"999 values over two lists", map[string]any{"idIn": values(500), "fileNameIn": values(499)}, true},
		{"1,000 values over two lists", map[string]any{"idIn": values(500), "fileNameIn": values(500)}, false},
		{"499 nested conditions", map[string]any{"or": conditions(499)}, true},
		{"500 nested conditions", map[string]any{"or": conditions(500)}, false},
	} {
		if c.ok {
			var out struct{ UserMedia mediaPage }
			if errs := s.gql(alice, userMediaOp, vars("first", 10, "where", c.where), &out); len(errs) > 0 {
				t.Errorf("%s: got %v, want an answer", c.name, errs)
			}
			continue
		}
		if e := s.wantCode(alice, userMediaOp, vars("first", 10, "where", c.where), "BAD_USER_INPUT"); !strings.Contains(e.Message, "at most 1000") {
			t.Errorf("%s: got %q, want it to name the bound", c.name, e.Message)
		}
	}
}
