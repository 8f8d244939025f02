package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
)

// spoolCmd runs `spool args…` with getenv and returns what it printed.
func spoolCmd(t *testing.T, ctx context.Context, getenv func(string) string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(ctx, args, getenv, &out, &errOut)
	return out.String(), errOut.String(), err
}

// uploaded parses upload's stdout, "PATH\tURL" lines, into a map.
func uploaded(t *testing.T, stdout string) map[string]string {
	t.Helper()
	urls := map[string]string{}
	for line := range strings.Lines(stdout) {
		path, url, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
		if !ok {
			t.Fatalf("stdout line %q is not PATH<TAB>URL", line)
		}
		urls[path] = url
	}
	return urls
}

func TestUploadCommand(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, nil)
	dir := t.TempDir()
	image, imageBytes := apptest.WriteFile(t, dir, "pic.png", apptest.PNG, 300<<10, 1)
	video, videoBytes := apptest.WriteFile(t, dir, "clip.mp4", apptest.MP4, 12<<20, 2)

	// The token comes from the environment, the server from a flag, and
	// flags may follow the files.
	stdout, stderr, err := spoolCmd(t, context.Background(), env("SPOOL_TOKEN", s.Token(t, "alice"), "SPOOL_SERVER", "http://127.0.0.1:1"),
		"upload", image, video, "--server", s.URL+"/", "--parallel", "2")
	if err != nil {
		t.Fatalf("spool upload: %v\nstderr:\n%s", err, stderr)
	}
	urls := uploaded(t, stdout)
	if len(urls) != 2 {
		t.Fatalf("stdout: got %q, want a line per file", stdout)
	}
	for path, want := range map[string][]byte{image: imageBytes, video: videoBytes} {
		if got := apptest.Get(t, urls[path]); !bytes.Equal(got, want) {
			t.Errorf("%s: downloaded %d bytes, want the %d uploaded", path, len(got), len(want))
		}
	}
	// Off a terminal, progress is a plain line per file and event.
	for _, want := range []string{image + ": 300.0 KiB, SINGLE", video + ": 12.0 MiB, CHUNKED in 3 chunks", image + ": uploaded", video + ": uploaded"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr: got %q, want a line with %q", stderr, want)
		}
	}
	if strings.Contains(stderr, "\x1b") {
		t.Errorf("stderr holds escape codes off a terminal: %q", stderr)
	}
}

func TestUploadBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file, _ := apptest.WriteFile(t, dir, "pic.png", apptest.PNG, 1000, 3)
	empty, _ := apptest.WriteFile(t, dir, "empty.png", "", 0, 4)
	withToken := env("SPOOL_TOKEN", "some-token")
	for _, c := range []struct {
		name   string
		getenv func(string) string
		args   []string
		want   string
	}{
		{"no files", withToken, nil, "no files"},
		{"a missing file", withToken, []string{filepath.Join(dir, "nope.png")}, "nope.png: no such file"},
		{"a directory", withToken, []string{dir}, "is a directory"},
		{"an empty file", withToken, []string{empty}, "is empty"},
		{"a server that is no URL", withToken, []string{"--server", "127.0.0.1:8080", file}, `--server "127.0.0.1:8080"`},
		{"a server of another scheme", withToken, []string{"--server", "ftp://example.com", file}, "--server"},
		{"a server from the environment", env("SPOOL_TOKEN", "t", "SPOOL_SERVER", "http://"), []string{file}, `--server "http://"`},
		{"--parallel 0", withToken, []string{"--parallel", "0", file}, "--parallel must be 1 to 64, got 0"},
		{"--parallel 65", withToken, []string{file, "--parallel", "65"}, "--parallel must be 1 to 64, got 65"},
		{"no token", env(), []string{file}, "no token"},
		{"a blank token", env("SPOOL_TOKEN", " \t"), []string{file}, "no token"},
		{"another scheme", withToken, []string{"--token", "Basic YWxpY2U6c2VjcmV0", file}, `takes the token alone, as spool token prints it; this one has 2 words, starting "Basic"`},
		{"a token with a space", env("SPOOL_TOKEN", "eyJ abc"), []string{file}, "takes the token alone"},
	} {
		stdout, _, err := spoolCmd(t, context.Background(), c.getenv, append([]string{"upload"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error saying %q", c.name, err, c.want)
			continue
		}
		if code := exitCode(err); code != 2 {
			t.Errorf("%s: exit code %d, want 2", c.name, code)
		}
		if stdout != "" {
			t.Errorf("%s: printed %q on stdout", c.name, stdout)
		}
	}
}

func TestUploadServerErrors(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, func(c *app.Config) { c.Upload.DefaultQuota = 2 << 20 })
	dir := t.TempDir()
	small, _ := apptest.WriteFile(t, dir, "small.png", apptest.PNG, 1000, 5)
	big, _ := apptest.WriteFile(t, dir, "big.mp4", apptest.MP4, 3<<20, 6)
	fake, _ := apptest.WriteFile(t, dir, "fake.png", apptest.MP4, 1000, 7) // not a PNG inside
	alice := s.Token(t, "alice")

	for _, c := range []struct {
		name  string
		token string
		files []string
		want  []string // in the error or on stderr
	}{
		{"a bad token", "not-a-token", []string{small}, []string{"UNAUTHENTICATED"}},
		{"over quota", alice, []string{big}, []string{"QUOTA_EXCEEDED", "quota"}},
		{"a file of another type", alice, []string{small, fake}, []string{"1 of 2 files failed", "fake.png: chunk 0:", "TYPE_MISMATCH"}},
	} {
		stdout, stderr, err := spoolCmd(t, context.Background(), env("SPOOL_SERVER", s.URL, "SPOOL_TOKEN", c.token),
			append([]string{"upload"}, c.files...)...)
		if err == nil {
			t.Errorf("%s: got no error", c.name)
			continue
		}
		for _, want := range c.want {
			if !strings.Contains(err.Error()+stderr, want) {
				t.Errorf("%s: got %v and stderr %q, want %q in them", c.name, err, stderr, want)
			}
		}
		if code := exitCode(err); code != 1 {
			t.Errorf("%s: exit code %d, want 1", c.name, code)
		}
		// Whatever did upload is still printed.
		if got := uploaded(t, stdout); len(c.files) == 2 && (len(got) != 1 || got[small] == "") {
			t.Errorf("%s: stdout %q, want the line of %s", c.name, stdout, small)
		}
	}
}

func TestUploadInterrupted(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, nil)
	file, _ := apptest.WriteFile(t, t.TempDir(), "pic.png", apptest.PNG, 1000, 8)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Ctrl-C before anything was sent
	_, _, err := spoolCmd(t, ctx, env("SPOOL_SERVER", s.URL, "SPOOL_TOKEN", s.Token(t, "alice")), "upload", file)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "run the same command again") || exitCode(err) != 130 {
		t.Errorf("got %v (exit code %d), want interrupted, how to resume, exit code 130", err, exitCode(err))
	}
}

// cursorHint finds the --after CURSOR that ls prints for the next page.
var cursorHint = regexp.MustCompile(`--after (\S+)`)

// listed returns the NAME column of an ls table, checking its header.
func listed(t *testing.T, stdout string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if header := strings.Fields(lines[0]); !slices.Equal(header, []string{"ID", "TYPE", "SIZE", "PIXELS", "LENGTH", "STATUS", "CREATED", "NAME"}) {
		t.Fatalf("ls header: got %q", lines[0])
	}
	var names []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		names = append(names, f[len(f)-1])
	}
	return names
}

func TestListMedia(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, nil)
	dir := t.TempDir()
	var files []string
	for i, name := range []string{"a.png", "b.png", "c.png"} {
		p, _ := apptest.WriteFile(t, dir, name, apptest.PNG, 1000, uint64(10+i))
		files = append(files, p)
	}
	clip, _ := apptest.WriteFile(t, dir, "d.mp4", apptest.MP4, 1000, 13)
	getenv := env("SPOOL_SERVER", s.URL, "SPOOL_TOKEN", s.Token(t, "alice"))
	if _, stderr, err := spoolCmd(t, context.Background(), getenv, append([]string{"upload", clip}, files...)...); err != nil {
		t.Fatalf("upload: %v\n%s", err, stderr)
	}
	all := []string{"a.png", "b.png", "c.png", "d.mp4"}

	// A token pasted as a header value, "Bearer " and all, is taken.
	pasted := env("SPOOL_SERVER", s.URL, "SPOOL_TOKEN", " bearer  "+s.Token(t, "alice")+"\n")
	if stdout, _, err := spoolCmd(t, context.Background(), pasted, "ls", "--all"); err != nil || len(listed(t, stdout)) != len(all) {
		t.Errorf("ls with a pasted \"Bearer …\": %v, %q; want the %d files", err, stdout, len(all))
	}

	// One page, and how to get the next.
	stdout, stderr, err := spoolCmd(t, context.Background(), getenv, "ls", "--first", "2")
	if err != nil {
		t.Fatalf("ls --first 2: %v", err)
	}
	page1 := listed(t, stdout)
	m := cursorHint.FindStringSubmatch(stderr)
	if len(page1) != 2 || m == nil || !strings.Contains(stderr, "--first 2") {
		t.Fatalf("ls --first 2: got %v and stderr %q, want 2 rows and the command for the next page", page1, stderr)
	}
	stdout, stderr, err = spoolCmd(t, context.Background(), getenv, "ls", "--first", "2", "--after", m[1])
	if err != nil {
		t.Fatalf("ls --after: %v", err)
	}
	page2 := listed(t, stdout)
	if got := slices.Sorted(slices.Values(append(page1, page2...))); !slices.Equal(got, all) || stderr != "" {
		t.Errorf("two pages: got %v and stderr %q, want %v and no hint after the last page", got, stderr, all)
	}

	// --all walks every page.
	stdout, _, err = spoolCmd(t, context.Background(), getenv, "ls", "--first", "2", "--all")
	if got := listed(t, stdout); err != nil || !slices.Equal(slices.Sorted(slices.Values(got)), all) {
		t.Errorf("ls --all: got %v, %v; want %v", got, err, all)
	}
	// --type filters.
	stdout, _, err = spoolCmd(t, context.Background(), getenv, "ls", "--type", "video")
	if got := listed(t, stdout); err != nil || !slices.Equal(got, []string{"d.mp4"}) || !strings.Contains(stdout, "video") {
		t.Errorf("ls --type video: got %v, %v; want [d.mp4]", got, err)
	}

	for _, c := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"--first", "0"}, "--first must be 1 to 100", 2},
		{[]string{"--first", "101"}, "--first must be 1 to 100", 2},
		{[]string{"--type", "document"}, `--type "document"`, 2},
		{[]string{"extra"}, "unexpected arguments", 2},
		{[]string{"--after", "not-a-cursor"}, "BAD_USER_INPUT", 1},
		{[]string{"--token", "bad"}, "UNAUTHENTICATED", 1},
	} {
		stdout, _, err := spoolCmd(t, context.Background(), getenv, append([]string{"ls"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) || exitCode(err) != c.code {
			t.Errorf("ls %v: got %v, want an error saying %q with exit code %d", c.args, err, c.want, c.code)
		}
		if stdout != "" {
			t.Errorf("ls %v: printed %q on stdout", c.args, stdout)
		}
	}
}

// TestLsNeedsNoServerForBadInput checks that bad flags fail before any
// request: no server runs here.
func TestLsNeedsNoServerForBadInput(t *testing.T) {
	t.Parallel()
	_, _, err := spoolCmd(t, context.Background(), env("SPOOL_TOKEN", "t"), "ls", "--server", "localhost")
	if err == nil || !strings.Contains(err.Error(), "--server") {
		t.Errorf("ls --server localhost: got %v, want the URL refused", err)
	}
	_, _, err = spoolCmd(t, context.Background(), env(), "ls")
	if err == nil || !strings.Contains(err.Error(), "no token") {
		t.Errorf("ls without a token: got %v, want no token", err)
	}
}
