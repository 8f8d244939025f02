package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoolhq/spool/internal/upload"
)

// CountFunc counts things by one label's value at scrape time (one
// GROUP BY query).
type CountFunc func(ctx context.Context) (map[string]int64, error)

// countCollector is a gauge per label value, read from a CountFunc at
// each scrape: figures kept in the database are the database's, shared
// by every replica, rather than counters each replica keeps apart.
type countCollector struct {
	desc   *prometheus.Desc
	values []string // reported even when the count has none of them (0)
	count  CountFunc
}

func (c *countCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *countCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := scrapeContext()
	defer cancel()
	counts, err := c.count(ctx)
	if err != nil {
		// The scrape goes on without these (promhttp.ContinueOnError) and
		// logs why.
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, v := range c.values {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[v]), v)
	}
}

// WatchUploads adds spool_uploads{status}, the uploads in each of
// statuses across all replicas, counted by count at each scrape.
func (m *Metrics) WatchUploads(statuses []string, count CountFunc) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(&countCollector{
		desc: prometheus.NewDesc(namespace+"_uploads",
			"Unfinished uploads by status, across all replicas (read from the database at scrape time).",
			[]string{"status"}, nil),
		values: statuses,
		count:  count,
	})
}

// WatchJobs adds spool_jobs{state}, the job queue's jobs in each of
// states across all replicas, counted by count at each scrape.
func (m *Metrics) WatchJobs(states []string, count CountFunc) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(&countCollector{
		desc: prometheus.NewDesc(namespace+"_jobs",
			"Jobs in the queue by state (available: waiting for a worker; running; retryable: failed, waiting to retry; scheduled), across all replicas (read from the database at scrape time).",
			[]string{"state"}, nil),
		values: states,
		count:  count,
	})
}

// droppedCounter is a broker that counts the events it could not send
// (Redis: queue full or Redis failing).
type droppedCounter interface{ Dropped() int64 }

// subscription is a broker that hears other replicas' events on a
// connection of its own (Redis), and knows whether it is up.
type subscription interface {
	SubscriptionUp() bool
	SubscriptionLosses() int64
}

// supersededCounter is a broker whose subscriber mailboxes count the
// events replaced by a newer one of the same upload before being read.
type supersededCounter interface{ Superseded() int64 }

// InstrumentBroker returns b counting the progress events published
// through it, and adds the counts b keeps itself, read at scrape time:
// spool_progress_events_dropped_total, spool_progress_subscription_up and
// spool_progress_subscription_losses_total (Redis), and
// spool_progress_events_superseded_total.
func (m *Metrics) InstrumentBroker(b upload.Broker) (upload.Broker, error) {
	if m == nil {
		return b, nil
	}
	if d, ok := b.(droppedCounter); ok {
		err := m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "progress_events_dropped_total",
			Help: "Progress events never sent to other replicas (Redis failing, or its publish queue full); subscribers resync from the database.",
		}, func() float64 { return float64(d.Dropped()) }))
		if err != nil {
			return nil, err
		}
	}
	if s, ok := b.(subscription); ok {
		for _, c := range []prometheus.Collector{
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: namespace, Name: "progress_subscription_up",
				Help: "1 while this replica's Redis subscription is up, 0 from its loss until it is back: other replicas' events do not reach this replica's subscribers meanwhile.",
			}, func() float64 {
				if s.SubscriptionUp() {
					return 1
				}
				return 0
			}),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace: namespace, Name: "progress_subscription_losses_total",
				Help: "Times this replica's Redis subscription was lost or moved to a new primary; every subscriber of the replica re-reads its snapshot from the database after each.",
			}, func() float64 { return float64(s.SubscriptionLosses()) }),
		} {
			if err := m.reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	if s, ok := b.(supersededCounter); ok {
		err := m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "progress_events_superseded_total",
			Help: "Progress events a subscriber's mailbox replaced with a newer one of the same upload before the subscriber read it (slow readers).",
		}, func() float64 { return float64(s.Superseded()) }))
		if err != nil {
			return nil, err
		}
	}
	return &countingBroker{Broker: b, m: m}, nil
}

// countingBroker counts what is published through it.
type countingBroker struct {
	upload.Broker
	m *Metrics
}

func (b *countingBroker) Publish(ctx context.Context, ev upload.Progress) error {
	err := b.Broker.Publish(ctx, ev)
	if err != nil {
		b.m.progressPublishErrors.Inc()
		return err
	}
	b.m.progressPublished.Inc()
	return nil
}

// SpaceFunc reports the bytes free and the size of the filesystem that
// holds local storage.
type SpaceFunc func() (free, size int64, err error)

// ReserveFunc returns the bytes local storage keeps free of chunks on a
// filesystem of size bytes.
type ReserveFunc func(size int64) int64

// spaceCollector reads a SpaceFunc at each scrape.
type spaceCollector struct {
	free, size, reserve *prometheus.Desc
	space               SpaceFunc
	reserveOf           ReserveFunc
}

func (c *spaceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.free
	ch <- c.size
	ch <- c.reserve
}

func (c *spaceCollector) Collect(ch chan<- prometheus.Metric) {
	free, size, err := c.space()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.free, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(free))
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(size))
	ch <- prometheus.MustNewConstMetric(c.reserve, prometheus.GaugeValue, float64(c.reserveOf(size)))
}

// WatchStorageSpace adds spool_storage_free_bytes,
// spool_storage_size_bytes and spool_storage_reserve_bytes, local
// storage's filesystem as space reports it at each scrape and the room
// chunks leave free on it (reserveOf).
func (m *Metrics) WatchStorageSpace(space SpaceFunc, reserveOf ReserveFunc) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(&spaceCollector{
		free: prometheus.NewDesc(namespace+"_storage_free_bytes",
			"Bytes free for spool on the filesystem of local storage (file://); chunks fail with \"storage is full\" once it is down to spool_storage_reserve_bytes.", nil, nil),
		size: prometheus.NewDesc(namespace+"_storage_size_bytes", "Size of the filesystem of local storage (file://).", nil, nil),
		reserve: prometheus.NewDesc(namespace+"_storage_reserve_bytes",
			"Bytes of local storage's filesystem that chunks leave free, for the database and processing (--disk-reserve).", nil, nil),
		space:     space,
		reserveOf: reserveOf,
	})
}
