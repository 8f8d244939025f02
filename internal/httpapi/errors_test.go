package httpapi

import (
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/upload"
)

// docErrorRow is one row of docs/API.md's error code table.
type docErrorRow struct {
	code upload.Code
	http string // a status, or "–" if the code only appears in GraphQL answers
}

// docErrorTable reads the table under "## Error codes" in docs/API.md.
func docErrorTable(t *testing.T) []docErrorRow {
	t.Helper()
	raw, err := os.ReadFile("../../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Error codes\n")
	if !ok {
		t.Fatal(`docs/API.md has no "## Error codes" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var rows []docErrorRow
	for line := range strings.Lines(section) {
		cells := strings.Split(strings.TrimSpace(line), "|")
		if len(cells) < 3 || cells[0] != "" || cells[len(cells)-1] != "" {
			continue // not a table row
		}
		cells = cells[1 : len(cells)-1]
		code := strings.TrimSpace(cells[0])
		if code == "code" || strings.Trim(code, "-") == "" {
			continue // the header and its rule
		}
		if len(cells) != 3 {
			t.Fatalf("docs/API.md error table row %q: want 3 cells (code, when, HTTP)", line)
		}
		rows = append(rows, docErrorRow{upload.Code(code), strings.TrimSpace(cells[2])})
	}
	return rows
}

// docs/API.md lists exactly the codes of upload.Codes, in its order, so
// the two cannot drift apart.
func TestAPIDocListsEveryCode(t *testing.T) {
	var documented []upload.Code
	for _, row := range docErrorTable(t) {
		documented = append(documented, row.code)
	}
	if want := upload.Codes(); !slices.Equal(documented, want) {
		for _, c := range want {
			if !slices.Contains(documented, c) {
				t.Errorf("docs/API.md does not list %s", c)
			}
		}
		for _, c := range documented {
			if !slices.Contains(want, c) {
				t.Errorf("docs/API.md lists %s, which upload.Codes does not have", c)
			}
		}
		t.Errorf("docs/API.md lists %v, want %v (upload.Codes, in its order)", documented, want)
	}
}

// docs/API.md gives each code the status of statusOf, or "–" for the
// codes that are only met inside GraphQL answers.
func TestAPIDocGivesEveryStatus(t *testing.T) {
	for _, row := range docErrorTable(t) {
		want := "–"
		if status, ok := statusOf[row.code]; ok {
			want = strconv.Itoa(status)
		}
		if row.http != want {
			t.Errorf("docs/API.md gives %s HTTP %q, want %q (statusOf)", row.code, row.http, want)
		}
	}
	for code := range statusOf {
		if !slices.Contains(upload.Codes(), code) {
			t.Errorf("statusOf maps %s, which upload.Codes does not have", code)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	for _, c := range []struct {
		code upload.Code
		want int
	}{
		{upload.CodeStorageUnavailable, http.StatusServiceUnavailable},
		{upload.CodeRequestTooLarge, http.StatusRequestEntityTooLarge},
		{upload.CodePreflightRequired, http.StatusBadRequest},
		{upload.CodeInternal, http.StatusInternalServerError},
		{upload.Code("NO_SUCH_CODE"), http.StatusInternalServerError},
	} {
		if got := httpStatus(c.code); got != c.want {
			t.Errorf("httpStatus(%s) = %d, want %d", c.code, got, c.want)
		}
	}
}
