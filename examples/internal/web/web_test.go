package web

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteJSON(t *testing.T) {
	w := httptest.NewRecorder()
	WriteJSON(w, http.StatusCreated, map[string]int{"a": 1})
	require.Equal(t, http.StatusCreated, w.Code)
	require.Equal(t, "application/json", w.Header().Get("Content-Type"))
	var got map[string]int
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	require.Equal(t, map[string]int{"a": 1}, got)

	// A value that does not encode is a 500 with an error body, not a
	// half-written answer.
	w = httptest.NewRecorder()
	WriteJSON(w, http.StatusOK, map[string]any{"f": func() {}})
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.JSONEq(t, `{"code":"internal","message":"the answer does not encode"}`, w.Body.String())
}

// TestLogged checks that answers name their node, that a request is logged
// with the status the handler wrote (at info level for a 5xx), and that a
// streaming handler can still flush through the wrapper.
func TestLogged(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := Logged(log, "X-Test-Node", "n1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("part"))
		require.NoError(t, http.NewResponseController(w).Flush())
	}))

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/ok", nil))
	require.Equal(t, "n1", w.Header().Get("X-Test-Node"))
	require.True(t, w.Flushed, "the flush did not reach the server's writer")
	require.Empty(t, logs.String(), "a 200 is logged at debug level")

	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/fail", nil))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	var line struct {
		Msg    string
		Path   string
		Status int
	}
	require.NoError(t, json.Unmarshal(logs.Bytes(), &line))
	require.Equal(t, "http", line.Msg)
	require.Equal(t, "/fail", line.Path)
	require.Equal(t, http.StatusServiceUnavailable, line.Status)
}

func TestAllowCrossOriginReads(t *testing.T) {
	w := httptest.NewRecorder()
	AllowCrossOriginReads(w)
	require.Equal(t, "*", w.Header().Get("Access-Control-Allow-Origin"))
}
