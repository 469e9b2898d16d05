// Package httpmetrics counts an HTTP server's requests by route pattern and
// status code, and times them: jutong_http_requests_total and
// jutong_http_request_seconds, labelled server (registry, control, ...).
package httpmetrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jutong/jutong/internal/promutil"
)

type metrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jutong_http_requests_total",
			Help: "HTTP requests served, by server, route pattern and status code."}, []string{"server", "route", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jutong_http_request_seconds",
			Help: "Time to serve an HTTP request, by server.", Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10)}, []string{"server"}),
	}
	m.requests = promutil.Register(reg, m.requests)
	m.seconds = promutil.Register(reg, m.seconds)
	return m
}

type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// Wrap counts h's requests; h must be (or end in) a ServeMux with patterns,
// which names the route (unmatched requests count as route "other").
func Wrap(h http.Handler, reg prometheus.Registerer, server string) http.Handler {
	if reg == nil {
		return h
	}
	m := newMetrics(reg)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "other"
		}
		m.requests.WithLabelValues(server, route, strconv.Itoa(rec.code)).Inc()
		m.seconds.WithLabelValues(server).Observe(time.Since(start).Seconds())
	})
}
