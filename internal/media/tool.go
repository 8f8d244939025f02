package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// maxStderr is how much of a tool's stderr an error quotes: with -v error
// the last lines say what went wrong.
const maxStderr = 600

// toolError is a tool that ran and failed: it exited non-zero. Whether that
// condemns the file is the caller's call.
type toolError struct {
	tool   string
	err    error
	stderr string
}

func (e *toolError) Error() string {
	if e.stderr == "" {
		return e.tool + ": " + e.err.Error()
	}
	return e.tool + ": " + e.stderr
}

func (e *toolError) Unwrap() error { return e.err }

// quietArgs go first on every run: no reading of our stdin, no banner, only
// errors on stderr (so the error quotes only what matters).
var quietArgs = []string{"-nostdin", "-hide_banner", "-v", "error"}

// run runs the tool at path with args (never through a shell) under the
// Processor's timeout and returns its stdout. A tool that exits non-zero
// gives a *toolError; one cut short by the timeout or ctx gives a
// transient error that is not one.
func (p *Processor) run(ctx context.Context, path string, args ...string) ([]byte, error) {
	var stdout bytes.Buffer
	err := p.stream(ctx, path, args, func(r io.Reader) error {
		_, err := io.Copy(&stdout, r)
		return err
	})
	return stdout.Bytes(), err
}

// stream runs the tool like run, handing its stdout to consume as it is
// written, so output of any length passes through bounded memory.
func (p *Processor) stream(ctx context.Context, path string, args []string, consume func(io.Reader) error) error {
	runCtx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	name := filepath.Base(path)
	cmd := exec.CommandContext(runCtx, path, args...)
	// Once the tool is killed, stop waiting for its pipes after a while
	// even if a child of it still holds them open.
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("media: %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		if cut := p.cutShort(ctx, runCtx, name); cut != nil {
			return cut
		}
		return fmt.Errorf("media: starting %s: %w", name, err)
	}
	consumeErr := consume(stdout)
	if consumeErr != nil {
		cancel() // stop the tool rather than let it block on a full pipe
	}
	_, _ = io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	if cut := p.cutShort(ctx, runCtx, name); cut != nil {
		return cut
	}
	switch {
	case consumeErr != nil:
		return fmt.Errorf("media: reading %s's output: %w", name, consumeErr)
	case waitErr != nil:
		var exit *exec.ExitError
		if !errors.As(waitErr, &exit) {
			return fmt.Errorf("media: %s: %w", name, waitErr)
		}
		return &toolError{tool: name, err: waitErr, stderr: lastBytes(toolWords(stderr.String(), args), maxStderr)}
	}
	return nil
}

// cutShort returns the transient error of a run whose caller's ctx ended
// or whose own timeout (runCtx) passed; nil if neither.
func (p *Processor) cutShort(ctx, runCtx context.Context, name string) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("media: %s: %w", name, ctx.Err())
	case runCtx.Err() != nil:
		return fmt.Errorf("media: %s ran longer than the %v limit", name, p.timeout)
	}
	return nil
}

// logContext is the prefix FFmpeg's libraries put on their log lines,
// the component and its address: "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x5603…] ".
var logContext = regexp.MustCompile(`\[[^\]\n]* @ 0x[0-9a-fA-F]+\] ?`)

// toolWords is a tool's stderr as an error quotes it: on one line, without
// FFmpeg's log prefixes, and with every file path the tool was given
// replaced by "file". A bad file's error is its media's processingError,
// which its uploader reads: the tool's words say what is wrong with the
// file, but the paths are the server's (its data dir or scratch dir, the
// owner's and the upload's ids).
func toolWords(stderr string, args []string) string {
	s := logContext.ReplaceAllString(stderr, "")
	for _, arg := range args {
		// A path, absolute or relative to a relative data dir: no option
		// or value spool passes has a slash.
		if !strings.HasPrefix(arg, "-") && strings.ContainsAny(arg, "/"+string(filepath.Separator)) {
			s = strings.ReplaceAll(s, arg, "file")
		}
	}
	var lines []string
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "; ")
}

// lastBytes keeps the end of s, where a tool's final error is.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
