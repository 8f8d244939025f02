package storagetrace_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/spoolhq/spool/internal/storage/gcs"
	"github.com/spoolhq/spool/internal/storage/gcs/gcstest"
	"github.com/spoolhq/spool/internal/storage/localfs"
	"github.com/spoolhq/spool/internal/storage/storagetest"
	"github.com/spoolhq/spool/internal/storage/storagetrace"
	"github.com/spoolhq/spool/internal/upload"
)

func localStore(t *testing.T) upload.Store {
	t.Helper()
	s, err := localfs.NewWithOptions(t.TempDir(), localfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func recording() (*tracetest.InMemoryExporter, *sdktrace.TracerProvider) {
	exporter := tracetest.NewInMemoryExporter()
	return exporter, sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
}

// The traced store behaves as the store it wraps: the conformance suite
// passes through it.
func TestConformanceThroughTracing(t *testing.T) {
	_, tp := recording()
	storagetest.Run(t, func(t *testing.T) upload.Store { return storagetrace.Wrap(localStore(t), tp) })
}

func TestWrapKeepsAbilities(t *testing.T) {
	_, tp := recording()
	local := storagetrace.Wrap(localStore(t), tp)
	if _, ok := local.(upload.LocalFiler); !ok {
		t.Errorf("traced local store %T lost LocalFiler", local)
	}
	if _, ok := local.(upload.DirectStore); ok {
		t.Errorf("traced local store %T claims DirectStore", local)
	}
	srv := gcstest.Start(t)
	g := gcs.New(srv.Client(t), srv.CreateBucket(t), "p", gcs.Options{
		SignedURLs: &gcs.SignedURLs{GoogleAccessID: gcstest.GoogleAccessID, PrivateKey: gcstest.SigningKey(t), Insecure: true},
		Sessions:   &gcs.Sessions{HTTPClient: http.DefaultClient, Endpoint: srv.URL},
	})
	traced := storagetrace.Wrap(g, tp)
	for name, ok := range map[string]bool{
		"ResumableStore": is[upload.ResumableStore](traced), "ObjectLinker": is[upload.ObjectLinker](traced),
		"Pinger": is[upload.Pinger](traced), "not LocalFiler": !is[upload.LocalFiler](traced),
	} {
		if !ok {
			t.Errorf("traced GCS store %T: %s does not hold", traced, name)
		}
	}
	if cp, ok := traced.(upload.ConcurrentPreparer); !ok || cp.PrepareConcurrency() != g.PrepareConcurrency() {
		t.Errorf("traced GCS store %T does not prepare %d files at once as GCS does", traced, g.PrepareConcurrency())
	}
	if is[upload.ConcurrentPreparer](local) {
		t.Errorf("traced local store %T claims ConcurrentPreparer", local)
	}
	if traced == upload.Store(g) {
		t.Error("the GCS store was not wrapped")
	}
	// A combination the package does not know is left as it is.
	odd := oddStore{localStore(t)}
	if got := storagetrace.Wrap(odd, tp); got != upload.Store(odd) {
		t.Errorf("a store with unknown abilities was wrapped as %T; want it returned as it is", got)
	}
}

func is[T any](s upload.Store) bool { _, ok := s.(T); return ok }

// oddStore is a Store that pings but is neither local nor GCS.
type oddStore struct{ upload.Store }

func (oddStore) Ping(context.Context) error { return nil }

func TestSpans(t *testing.T) {
	exporter, tp := recording()
	s := storagetrace.Wrap(localStore(t), tp)
	ctx := context.Background()
	if err := s.Prepare(ctx, "usr/upl", 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteChunk(ctx, "usr/upl", upload.ChunkRef{Index: 0, Size: 10}, strings.NewReader("0123456789")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteChunk(ctx, "../escape", upload.ChunkRef{Index: 1, Size: 10}, strings.NewReader("x")); err == nil {
		t.Fatal("writing under a bad key succeeded")
	}
	if _, err := s.Open(ctx, "usr/missing"); err == nil {
		t.Fatal("opening a missing object succeeded")
	}
	spans := exporter.GetSpans()
	var names []string
	for _, sp := range spans {
		names = append(names, sp.Name)
	}
	if got := strings.Join(names, " "); got != "storage.Prepare storage.WriteChunk storage.WriteChunk storage.Open" {
		t.Fatalf("spans %q", got)
	}
	if spans[1].Status.Code == codes.Error || spans[2].Status.Code != codes.Error {
		t.Errorf("statuses %v and %v: want the good write unmarked and the bad one an error", spans[1].Status, spans[2].Status)
	}
	if spans[3].Status.Code == codes.Error {
		t.Errorf("a missing object is an answer, not a failure: status %v", spans[3].Status)
	}
	found := false
	for _, kv := range spans[1].Attributes {
		if kv.Key == "spool.storage.key" && kv.Value.AsString() == "usr/upl" {
			found = true
		}
	}
	if !found {
		t.Errorf("WriteChunk attributes %v lack the key", spans[1].Attributes)
	}
}
