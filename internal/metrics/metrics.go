// Package metrics owns spool's Prometheus metrics: the collectors, their
// names, units and buckets, and the decorators that count what engines do
// (storage calls, database calls). One Metrics is made per server over a
// registry of its own, never Prometheus's global one, and handed to the
// parts that record; a nil *Metrics records nothing, so packages used
// without metrics (tests, tools) need no stand-in.
//
// Hot paths (a chunk PUT) only touch collectors resolved once here: an
// observation is a few atomic operations and no allocation.
package metrics

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every metric of spool's own.
const namespace = "spool"

// Buckets of the histograms, chosen from what spool serves: chunks of
// 5-8 MiB (up to 150 MiB for a SINGLE upload) over networks from
// loopback (~15 ms for 8 MiB) to a slow client (minutes).
var (
	chunkSecondsBuckets    = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	chunkBytesBuckets      = prometheus.ExponentialBuckets(256<<10, 2, 11) // 256 KiB … 256 MiB
	mutationSecondsBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

// Metrics are spool's collectors, registered in one registry.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	chunkPutSeconds  prometheus.Histogram
	chunkBytes       prometheus.Histogram
	receivedBytes    prometheus.Counter
	chunkPutFailures *prometheus.CounterVec // by code

	mutationSeconds *prometheus.HistogramVec // by field
	mutationErrors  *prometheus.CounterVec   // by field and code

	websockets    prometheus.Gauge
	subscriptions prometheus.Gauge

	progressPublished     prometheus.Counter
	progressPublishErrors prometheus.Counter

	jobFailures *prometheus.CounterVec // by kind

	storageErrors  *prometheus.CounterVec // by op
	databaseErrors *prometheus.CounterVec // by op
}

// New makes spool's collectors and registers them, with Go's runtime and
// process collectors, in reg. It fails only if reg already holds
// collectors of the same names.
func New(reg *prometheus.Registry, log *slog.Logger) (*Metrics, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg: reg,
		log: log,
		chunkPutSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "chunk_put_duration_seconds",
			Help:    "Time from a chunk PUT's arrival on the data plane to its answer, whatever the outcome.",
			Buckets: chunkSecondsBuckets,
		}),
		chunkBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "chunk_put_body_bytes",
			Help:    "Body bytes read from each chunk PUT.",
			Buckets: chunkBytesBuckets,
		}),
		receivedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "received_bytes_total",
			Help: "Chunk body bytes read by the data plane, kept or not.",
		}),
		chunkPutFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "chunk_put_failures_total",
			Help: "Chunk PUTs answered with an error, by error code.",
		}, []string{"code"}),
		mutationSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "graphql_mutation_duration_seconds",
			Help:    "Time to resolve a GraphQL mutation field (initBatch, confirmChunk, complete, …), whatever the outcome.",
			Buckets: mutationSecondsBuckets,
		}, []string{"field"}),
		mutationErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "graphql_mutation_errors_total",
			Help: "GraphQL mutation fields that returned an error, by field and error code.",
		}, []string{"field", "code"}),
		websockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "websocket_connections",
			Help: "Open GraphQL websocket connections.",
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "subscriptions",
			Help: "Running GraphQL subscriptions over websockets.",
		}),
		progressPublished: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "progress_events_published_total",
			Help: "Progress events handed to the broker (in-process or Redis).",
		}),
		progressPublishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "progress_publish_errors_total",
			Help: "Progress events the broker refused to take (closed).",
		}),
		jobFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "job_failures_total",
			Help: "Job attempts that failed (to be retried or discarded), by job kind.",
		}, []string{"kind"}),
		storageErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "storage_errors_total",
			Help: "Storage calls that failed, by operation; missing objects, cancelled requests and clients' broken bodies are not counted.",
		}, []string{"op"}),
		databaseErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "database_errors_total",
			Help: "Database calls of the upload service (ent) that failed, by operation; cancelled requests are not counted.",
		}, []string{"op"}),
	}
	for _, op := range storageOps {
		m.storageErrors.WithLabelValues(op)
	}
	for _, op := range databaseOps {
		m.databaseErrors.WithLabelValues(op)
	}
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.chunkPutSeconds, m.chunkBytes, m.receivedBytes, m.chunkPutFailures,
		m.mutationSeconds, m.mutationErrors, m.websockets, m.subscriptions,
		m.progressPublished, m.progressPublishErrors, m.jobFailures,
		m.storageErrors, m.databaseErrors,
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Handler serves the registry in Prometheus's exposition formats. A
// scrape-time source that fails (the database during an outage) leaves
// its metrics out and is logged; the rest are still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg, // promhttp_metric_handler_errors_total
		Timeout:           scrapeTimeout + 5*time.Second,
		EnableOpenMetrics: true,
	})
}

// ChunkPut records one chunk PUT: its time, the body bytes read and, for
// a failure, its error code ("" for success).
func (m *Metrics) ChunkPut(elapsed time.Duration, bodyBytes int64, code string) {
	if m == nil {
		return
	}
	m.chunkPutSeconds.Observe(elapsed.Seconds())
	m.chunkBytes.Observe(float64(bodyBytes))
	m.receivedBytes.Add(float64(bodyBytes))
	if code != "" {
		m.chunkPutFailures.WithLabelValues(code).Inc()
	}
}

// MutationObserver returns the histogram of one mutation field, resolved
// once so that timing a call costs no lookup.
func (m *Metrics) MutationObserver(field string) prometheus.Observer {
	if m == nil {
		return nil
	}
	return m.mutationSeconds.WithLabelValues(field)
}

// MutationError counts a mutation field that returned an error of code.
func (m *Metrics) MutationError(field, code string) {
	if m == nil {
		return
	}
	m.mutationErrors.WithLabelValues(field, code).Inc()
}

// WebsocketOpened and WebsocketClosed move the open websockets gauge.
func (m *Metrics) WebsocketOpened() {
	if m != nil {
		m.websockets.Inc()
	}
}

// WebsocketClosed is called once per socket WebsocketOpened counted.
func (m *Metrics) WebsocketClosed() {
	if m != nil {
		m.websockets.Dec()
	}
}

// SubscriptionStarted and SubscriptionEnded move the subscriptions gauge.
func (m *Metrics) SubscriptionStarted() {
	if m != nil {
		m.subscriptions.Inc()
	}
}

// SubscriptionEnded is called once per subscription SubscriptionStarted
// counted.
func (m *Metrics) SubscriptionEnded() {
	if m != nil {
		m.subscriptions.Dec()
	}
}

// JobFailed counts a failed attempt of a job of kind.
func (m *Metrics) JobFailed(kind string) {
	if m != nil {
		m.jobFailures.WithLabelValues(kind).Inc()
	}
}

// databaseOps are the operations DatabaseError is told of (see
// sqltx.OnError).
var databaseOps = []string{"exec", "query", "begin", "commit", "rollback"}

// DatabaseError counts a failed database call; op is one of databaseOps.
// It is the observer internal/database's WithErrorObserver takes.
func (m *Metrics) DatabaseError(op string, _ error) {
	if m != nil {
		m.databaseErrors.WithLabelValues(op).Inc()
	}
}

// WatchDatabasePool adds database/sql's pool statistics (open, in-use and
// idle connections, waits for one) as go_sql_* metrics labelled
// db_name="spool"; reads, when not nil, is SQLite's pool of read
// connections, labelled db_name="spool_reads".
func (m *Metrics) WatchDatabasePool(db, reads *sql.DB) error {
	if m == nil {
		return nil
	}
	if err := m.reg.Register(collectors.NewDBStatsCollector(db, namespace)); err != nil {
		return err
	}
	if reads == nil {
		return nil
	}
	return m.reg.Register(collectors.NewDBStatsCollector(reads, namespace+"_reads"))
}

// scrapeTimeout bounds each scrape-time query (uploads by status, job
// queue depth), so a slow database cannot hold a scrape for long.
const scrapeTimeout = 5 * time.Second

// scrapeContext is the context of one scrape-time query.
func scrapeContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), scrapeTimeout)
}
