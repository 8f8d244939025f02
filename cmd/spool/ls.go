package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spoolhq/spool/internal/client"
)

// Page sizes of ls: maxPage is the largest the server serves.
const (
	defaultPage = 20
	maxPage     = 100
)

// listMedia prints a table of the caller's media, newest first: one page, and on
// stderr how to ask for the next, or with --all every page.
func listMedia(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	mediaTypes := []string{"image", "video", "audio"}
	fs := flag.NewFlagSet("spool ls", flag.ContinueOnError)
	fs.SetOutput(stderr)
	remote := addRemoteFlags(fs)
	first := fs.Int("first", defaultPage, fmt.Sprintf("media per page, 1 to %d", maxPage))
	after := fs.String("after", "", "start after this `CURSOR` (printed at the end of the previous page)")
	all := fs.Bool("all", false, "list every page")
	kind := fs.String("type", "", "only media of this `TYPE`: "+strings.Join(mediaTypes, ", "))
	if err := parseFlags(fs, args, getenv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *first < 1 || *first > maxPage {
		return fmt.Errorf("--first must be 1 to %d, got %d", maxPage, *first)
	}
	if *kind != "" && !slices.Contains(mediaTypes, strings.ToLower(*kind)) {
		return fmt.Errorf("--type %q is not one of %s", *kind, strings.Join(mediaTypes, ", "))
	}
	c, err := remote.client(1)
	if err != nil {
		return err
	}
	// Tests run the server in-process, and its shutdown waits for open
	// connections: leave none behind.
	defer c.HTTP.CloseIdleConnections()

	q := client.MediaQuery{First: *first, After: *after, MediaType: strings.ToUpper(*kind)}
	table := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for n := 0; ; n++ {
		page, err := c.UserMedia(ctx, q)
		if err != nil {
			table.Flush() // the pages so far
			return &failure{err}
		}
		if n == 0 {
			fmt.Fprintln(table, "ID\tTYPE\tSIZE\tPIXELS\tLENGTH\tSTATUS\tCREATED\tNAME")
		}
		for _, m := range page.Media {
			fmt.Fprintln(table, mediaRow(m))
		}
		if !page.HasNextPage {
			return table.Flush()
		}
		if !*all {
			if err := table.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "%d media in all; next page: spool ls%s --after %s (or --all)\n",
				page.TotalCount, nextPageFlags(*first, *kind), page.EndCursor)
			return nil
		}
		q.After = page.EndCursor
	}
}

// mediaRow is one media's line of the ls table, its columns separated by
// tabs.
func mediaRow(m client.MediaFile) string {
	return strings.Join([]string{
		m.ID, strings.ToLower(m.MediaType), formatSize(m.FileSize), formatPixels(m.Width, m.Height),
		formatLength(m.DurationSeconds), strings.ToLower(m.Status), m.CreatedAt.Local().Format("2006-01-02 15:04"), m.FileName,
	}, "\t")
}

// unknown fills a column whose value the server does not know (yet), so
// that every row has as many words as the header.
const unknown = "-"

// formatPixels writes dimensions as "1920×1080".
func formatPixels(width, height *int) string {
	if width == nil || height == nil {
		return unknown
	}
	return fmt.Sprintf("%d×%d", *width, *height)
}

// formatLength writes a duration rounded to the second as m:ss, or h:mm:ss
// from an hour on: "0:07", "1:02", "1:00:05".
func formatLength(seconds *float64) string {
	if seconds == nil || *seconds < 0 || math.IsNaN(*seconds) || math.IsInf(*seconds, 0) {
		return unknown
	}
	s := int64(math.Round(*seconds))
	if s < 3600 {
		return fmt.Sprintf("%d:%02d", s/60, s%60)
	}
	return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
}

// nextPageFlags repeats the flags that shape a page, for the hint.
func nextPageFlags(first int, kind string) string {
	var s string
	if kind != "" {
		s += " --type " + strings.ToLower(kind)
	}
	if first != defaultPage {
		s += fmt.Sprintf(" --first %d", first)
	}
	return s
}
