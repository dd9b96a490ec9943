// Package web holds the HTTP pieces the example nodes share: JSON answers,
// the request log, cross-origin reads and the Prometheus endpoint.
package web

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rago-raft/rago/promexport"
	"github.com/rago-raft/rago/raftserver"
)

// WriteJSON answers with v as indented JSON and the given status. A value
// that does not encode becomes a 500 with an error body of the examples'
// shape.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"code":"internal","message":"the answer does not encode"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// AllowCrossOriginReads lets pages served by other nodes read this answer:
// a node's page gathers other nodes' status, or falls back to another
// node's API when its own goes down. Only reads are opened this way;
// writes need the page's own node.
func AllowCrossOriginReads(w http.ResponseWriter) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
}

// Logged wraps h so that every answer names the node that gave it (in the
// header named header) and every request is logged with its status and
// duration: at debug level, or info for a 5xx, which is worth seeing while
// experimenting.
func Logged(log *slog.Logger, header, node string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(header, node)
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		level := slog.LevelDebug
		if rec.status >= 500 {
			level = slog.LevelInfo
		}
		log.Log(r.Context(), level, "http", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"took", time.Since(start).Round(time.Microsecond).String())
	})
}

// statusRecorder remembers the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the server's writer (to flush
// a stream).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Metrics serves rago's metrics of sys and Go's runtime and process
// metrics in Prometheus's text format, from a registry of its own.
// Aggregate sums rago's series over the node's servers: a node that hosts
// hundreds of clusters would otherwise export series for each.
func Metrics(sys *raftserver.System, aggregate bool) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		promexport.New(sys, promexport.Options{Aggregate: aggregate}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
