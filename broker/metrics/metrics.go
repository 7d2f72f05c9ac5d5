// Package metrics is the broker's Prometheus instrumentation: grants by state
// and effect, policy decision latency, running sessions, credential issue and
// revoke failures, recording upload failures, the recording spool's size and
// the approvals waiting. It sits beside the flow (token → decision → grant →
// credential → launch → revoke) and only counts it: the broker calls the
// Broker's methods at each step, and spool size and pending approvals are read
// when /metrics is scraped. Every Broker has its own registry (no globals);
// cmd/jitgate serves Handler on a separate listener (--metrics-listen), never
// on the API's.
//
//	m, err := metrics.New(metrics.Config{SpoolDir: dir, Pending: countPending})
//	svc, err := broker.New(broker.Config{..., Metrics: m})
//	go http.Serve(ln, m.Handler())
package metrics

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names, for scrapers and tests.
const (
	GrantTransitions     = "jitgate_grant_transitions_total"
	DecisionSeconds      = "jitgate_policy_decision_seconds"
	ActiveSessions       = "jitgate_active_sessions"
	CredentialIssueFail  = "jitgate_credential_issue_failures_total"
	CredentialRevokeFail = "jitgate_credential_revoke_failures_total"
	UploadFailures       = "jitgate_recording_upload_failures_total"
	SpoolBytes           = "jitgate_recording_spool_bytes"
	SpoolFiles           = "jitgate_recording_spool_files"
	ApprovalsPending     = "jitgate_approvals_pending"
)

// Config says where the scrape-time gauges come from.
type Config struct {
	// SpoolDir is the recording spool (broker.Config.RecordDir); its size is
	// read at each scrape. Optional.
	SpoolDir string
	// Pending counts the grants waiting for approval, at each scrape.
	// Optional. An error makes the gauge absent from that scrape (never a
	// made-up zero).
	Pending func(ctx context.Context) (int, error)
	// ScrapeTimeout bounds Pending; default 5s.
	ScrapeTimeout time.Duration
}

// Broker holds one broker process's metrics. A nil *Broker counts nothing,
// so the broker needs no checks where metrics are off.
type Broker struct {
	reg         *prometheus.Registry
	transitions *prometheus.CounterVec
	decision    *prometheus.HistogramVec
	sessions    prometheus.Gauge
	issueFail   *prometheus.CounterVec
	revokeFail  *prometheus.CounterVec
	uploadFail  prometheus.Counter
}

// New builds the registry: the broker's own metrics plus the Go runtime's
// (go_goroutines, ...) and the process's (process_open_fds,
// process_resident_memory_bytes, ...).
func New(cfg Config) (*Broker, error) {
	if cfg.ScrapeTimeout <= 0 {
		cfg.ScrapeTimeout = 5 * time.Second
	}
	b := &Broker{
		reg: prometheus.NewRegistry(),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: GrantTransitions,
			Help: "Grants that reached a state, by state and by the policy effect that decided them."}, []string{"state", "effect"}),
		decision: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: DecisionSeconds,
			Help:    "Time from request to stored policy decision, by effect.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"effect"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Name: ActiveSessions,
			Help: "Session proxies this broker launched that are still running."}),
		issueFail: prometheus.NewCounterVec(prometheus.CounterOpts{Name: CredentialIssueFail,
			Help: "Credentials that could not be issued, by target."}, []string{"target"}),
		revokeFail: prometheus.NewCounterVec(prometheus.CounterOpts{Name: CredentialRevokeFail,
			Help: "Credentials whose revocation failed after every retry (they still expire by themselves), by target."}, []string{"target"}),
		uploadFail: prometheus.NewCounter(prometheus.CounterOpts{Name: UploadFailures,
			Help: "Spooled recordings the broker's flush could not store (they stay spooled and are retried)."}),
	}
	cs := []prometheus.Collector{b.transitions, b.decision, b.sessions, b.issueFail, b.revokeFail, b.uploadFail,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
	if cfg.SpoolDir != "" {
		cs = append(cs, spoolCollector{dir: cfg.SpoolDir,
			bytes: prometheus.NewDesc(SpoolBytes, "Bytes of recordings waiting in the spool.", nil, nil),
			files: prometheus.NewDesc(SpoolFiles, "Files waiting in the recording spool.", nil, nil)})
	}
	if cfg.Pending != nil {
		cs = append(cs, pendingCollector{count: cfg.Pending, timeout: cfg.ScrapeTimeout,
			desc: prometheus.NewDesc(ApprovalsPending, "Grants waiting for approval.", nil, nil)})
	}
	for _, c := range cs {
		if err := b.reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("metrics: register"), err)
		}
	}
	return b, nil
}

// Registry is the Broker's registry, for tests and extra collectors.
func (b *Broker) Registry() *prometheus.Registry { return b.reg }

// Handler serves the registry in the Prometheus text format.
func (b *Broker) Handler() http.Handler {
	return promhttp.HandlerFor(b.reg, promhttp.HandlerOpts{Registry: b.reg})
}

// Transition counts a grant reaching state (grant.State's String) under effect
// ("allow", "approve", "deny").
func (b *Broker) Transition(state, effect string) {
	if b == nil {
		return
	}
	b.transitions.WithLabelValues(state, effect).Inc()
}

// Decision observes how long one policy decision took.
func (b *Broker) Decision(effect string, d time.Duration) {
	if b == nil {
		return
	}
	b.decision.WithLabelValues(effect).Observe(d.Seconds())
}

// SessionStarted and SessionEnded track the running session proxies.
func (b *Broker) SessionStarted() {
	if b != nil {
		b.sessions.Inc()
	}
}

// SessionEnded: see SessionStarted.
func (b *Broker) SessionEnded() {
	if b != nil {
		b.sessions.Dec()
	}
}

// IssueFailed counts a credential that target's source would not issue.
func (b *Broker) IssueFailed(target string) {
	if b != nil {
		b.issueFail.WithLabelValues(target).Inc()
	}
}

// RevokeFailed counts a revocation that failed after its retries.
func (b *Broker) RevokeFailed(target string) {
	if b != nil {
		b.revokeFail.WithLabelValues(target).Inc()
	}
}

// UploadFailed counts a flush of the spool that left recordings behind.
func (b *Broker) UploadFailed() {
	if b != nil {
		b.uploadFail.Inc()
	}
}

// spoolCollector sizes the spool directory at scrape time. A spool that cannot
// be read is reported as a collection error, not as empty.
type spoolCollector struct {
	dir          string
	bytes, files *prometheus.Desc
}

func (c spoolCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.bytes; ch <- c.files }

func (c spoolCollector) Collect(ch chan<- prometheus.Metric) {
	var n, size int64
	err := filepath.WalkDir(c.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && p != c.dir {
				return nil // removed while we walked: uploaded
			}
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n++
				size += fi.Size()
			}
		}
		return nil
	})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.bytes, err)
		ch <- prometheus.NewInvalidMetric(c.files, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(size))
	ch <- prometheus.MustNewConstMetric(c.files, prometheus.GaugeValue, float64(n))
}

type pendingCollector struct {
	count   func(context.Context) (int, error)
	timeout time.Duration
	desc    *prometheus.Desc
}

func (c pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c pendingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	n, err := c.count(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}
