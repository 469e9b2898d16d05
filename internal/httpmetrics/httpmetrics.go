// Package httpmetrics counts an HTTP server's requests by route pattern and
// status code, and times them: jutong_http_requests_total and
// jutong_http_request_seconds, labelled server (registry, control, ...).
// promhttp's instrumenters do it, so that the response writer keeps what
// the server's gives (Flush for the streamed snapshots, Unwrap for
// http.ResponseController).
package httpmetrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jutong/jutong/internal/promutil"
)

type metrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (_ *metrics, err error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jutong_http_requests_total",
			Help: "HTTP requests served, by server, route pattern and status code."}, []string{"server", "route", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jutong_http_request_seconds",
			Help: "Time to serve an HTTP request, by server.", Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10)}, []string{"server"}),
	}
	m.requests = promutil.Register(reg, m.requests, &err)
	m.seconds = promutil.Register(reg, m.seconds, &err)
	return m, err
}

// Wrap counts h's requests; h must be (or end in) a ServeMux with patterns,
// which names the route (unmatched requests count as route "other").
func Wrap(h http.Handler, reg prometheus.Registerer, server string) (http.Handler, error) {
	if reg == nil {
		return h, nil
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	labels := prometheus.Labels{"server": server}
	// The mux sets the request's Pattern as it routes it; the label is read
	// once the request is served.
	route := promhttp.WithLabelFromRequest("route", func(r *http.Request) string {
		if r.Pattern == "" {
			return "other"
		}
		return r.Pattern
	})
	return promhttp.InstrumentHandlerDuration(m.seconds.MustCurryWith(labels),
		promhttp.InstrumentHandlerCounter(m.requests.MustCurryWith(labels), h, route)), nil
}
