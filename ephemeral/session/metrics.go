package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Proxy metric names. Every one carries a constant grant="<id>" label, so the
// series of many proxies scraped into one place stay apart.
const (
	MetricStatements  = "jitgate_proxy_statements_total"         // {rule, verdict="allowed"|"blocked"}
	MetricMasked      = "jitgate_proxy_values_masked_total"      // {detector}
	MetricBytes       = "jitgate_proxy_bytes_relayed_total"      // {direction="from_client"|"to_client"}
	MetricConnections = "jitgate_proxy_client_connections"       // open now
	MetricConnsTotal  = "jitgate_proxy_client_connections_total" // accepted so far
)

// verdictCounter is an engine that counts its guard's verdicts (postgres).
type verdictCounter interface {
	Verdicts() (allowed, blocked uint64)
}

// maskCounter is an engine that reports the values its masker replaced.
type maskCounter interface {
	MaskCounts() map[string]uint64
}

// proxyMetrics is one session proxy's Prometheus registry and its listener.
// A nil *proxyMetrics (metrics off) counts nothing.
type proxyMetrics struct {
	reg      *prometheus.Registry
	open     prometheus.Gauge
	accepted prometheus.Counter
	in, out  prometheus.Counter
	srv      *http.Server
	ln       net.Listener
}

// startMetrics serves g's metrics on g.Metrics, which must be a loopback
// address: the counters name rules and the grant, so they stay on the host.
// It returns nil, nil when g asks for no metrics.
func startMetrics(g *spec.Grant, eng Engine, log *slog.Logger) (*proxyMetrics, error) {
	if g.Metrics == "" {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(g.Metrics)
	if err != nil {
		return nil, fmt.Errorf("session: metrics address %q: %w", g.Metrics, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("session: metrics address %q is not loopback", g.Metrics)
	}
	m := &proxyMetrics{reg: prometheus.NewRegistry()}
	r := prometheus.WrapRegistererWith(prometheus.Labels{"grant": g.ID}, m.reg)
	m.open = prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricConnections, Help: "Client connections open now."})
	m.accepted = prometheus.NewCounter(prometheus.CounterOpts{Name: MetricConnsTotal, Help: "Client connections accepted."})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricBytes,
		Help: "Bytes relayed between the client and the proxy (after masking on the way back)."}, []string{"direction"})
	m.in, m.out = bytes.WithLabelValues("from_client"), bytes.WithLabelValues("to_client")
	cs := []prometheus.Collector{m.open, m.accepted, bytes, engineCollector{eng: eng, rule: g.Rule,
		statements: prometheus.NewDesc(MetricStatements, "Statements the guard judged, by policy rule and verdict.", []string{"rule", "verdict"}, nil),
		masked:     prometheus.NewDesc(MetricMasked, "Values the masker replaced, by detector (column: whole values by column rule).", []string{"detector"}, nil)}}
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("session: metrics: %w", err)
		}
	}
	// Runtime and process series stay unlabelled, as Prometheus names them.
	if err := m.reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("session: metrics: %w", err)
	}
	if err := m.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("session: metrics: %w", err)
	}
	ln, err := net.Listen("tcp", g.Metrics)
	if err != nil {
		return nil, fmt.Errorf("session: metrics listen %s: %w", g.Metrics, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	m.ln, m.srv = ln, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics listener stopped", "err", err)
		}
	}()
	return m, nil
}

// addr is the listener's address, "" when metrics are off.
func (m *proxyMetrics) addr() string {
	if m == nil {
		return ""
	}
	return m.ln.Addr().String()
}

// stop closes the listener (the proxy is exiting; a last scrape is not waited for).
func (m *proxyMetrics) stop() {
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
}

// track counts an accepted client connection and the bytes it carries; call
// the returned func when the connection is done.
func (m *proxyMetrics) track(c net.Conn) (net.Conn, func()) {
	if m == nil {
		return c, func() {}
	}
	m.accepted.Inc()
	m.open.Inc()
	return &countingConn{Conn: c, in: m.in, out: m.out}, m.open.Dec
}

// countingConn counts the bytes read from and written to a client.
type countingConn struct {
	net.Conn
	in, out prometheus.Counter
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.in.Add(float64(n))
	}
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.out.Add(float64(n))
	}
	return n, err
}

// engineCollector reads the engine's own counters at scrape time, so the
// relay loop pays nothing for them.
type engineCollector struct {
	eng                Engine
	rule               string
	statements, masked *prometheus.Desc
}

func (c engineCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.statements; ch <- c.masked }

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	if v, ok := c.eng.(verdictCounter); ok {
		a, b := v.Verdicts()
		ch <- prometheus.MustNewConstMetric(c.statements, prometheus.CounterValue, float64(a), c.rule, "allowed")
		ch <- prometheus.MustNewConstMetric(c.statements, prometheus.CounterValue, float64(b), c.rule, "blocked")
	}
	if m, ok := c.eng.(maskCounter); ok {
		for name, n := range m.MaskCounts() {
			ch <- prometheus.MustNewConstMetric(c.masked, prometheus.CounterValue, float64(n), name)
		}
	}
}
