package node

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/examples/internal/creds"
	"github.com/rago-raft/rago/examples/kvstore/internal/api"
)

// TestAPITokenGuardsWritesAndAdmin: with a token, every request that is
// not a plain read, and the admin endpoints, need it; reads, the page and
// the status do not. Without a token nothing does.
func TestAPITokenGuardsWritesAndAdmin(t *testing.T) {
	const token = "s3cret-token-of-some-length"
	guarded := &Node{cfg: Config{ID: "n1"}, token: creds.NewToken(token)}
	open := &Node{cfg: Config{ID: "n1"}}

	for _, tc := range []struct {
		method, path string
		needs        bool
	}{
		{http.MethodGet, "/", false},
		{http.MethodGet, "/kv/k", false},
		{http.MethodHead, "/kv/k", false},
		{http.MethodGet, "/kv", false},
		{http.MethodGet, "/status", false},
		{http.MethodGet, "/cluster", false},
		{http.MethodGet, "/recent", false},
		{http.MethodGet, "/watch", false},
		{http.MethodGet, "/metrics", false},
		{http.MethodGet, "/metrics/summary", false},
		{http.MethodPut, "/kv/k", true},
		{http.MethodDelete, "/kv/k", true},
		{http.MethodPost, "/kv/k/cas", true},
		{http.MethodPost, "/cluster/members", true},
		{http.MethodDelete, "/cluster/members/n2", true},
		{http.MethodGet, "/backup", true},
		{http.MethodGet, "/debug/pprof/", true},
		{http.MethodGet, "/debug/pprof/cmdline", true},
		{http.MethodPatch, "/status", true}, // would be 405, but only after the token
		{http.MethodOptions, "/kv/k", true}, // anything but GET and HEAD
	} {
		require.Equal(t, tc.needs, needsToken(tc.method, tc.path), "%s %s", tc.method, tc.path)

		check := func(n *Node, header string) (bool, *httptest.ResponseRecorder) {
			r := httptest.NewRequest(tc.method, tc.path, nil)
			if header != "" {
				r.Header.Set("Authorization", header)
			}
			w := httptest.NewRecorder()
			return n.authorized(w, r, tc.path), w
		}
		ok, _ := check(open, "")
		require.True(t, ok, "no token configured: %s %s is open", tc.method, tc.path)
		ok, _ = check(guarded, "Bearer "+token)
		require.True(t, ok, "%s %s with the token", tc.method, tc.path)
		ok, _ = check(guarded, "bearer "+token)
		require.True(t, ok, "the scheme is case-insensitive")
		for _, header := range []string{"", "Bearer", "Bearer wrong-token-of-some-length", "Basic " + token, "Bearer " + token + "x", token} {
			ok, w := check(guarded, header)
			if !tc.needs {
				require.True(t, ok, "%s %s needs no token", tc.method, tc.path)
				continue
			}
			require.False(t, ok, "%s %s with Authorization %q", tc.method, tc.path, header)
			require.Equal(t, http.StatusUnauthorized, w.Code)
			require.Equal(t, `Bearer realm="kvstore"`, w.Header().Get("WWW-Authenticate"))
			var e api.Error
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e))
			require.Equal(t, api.CodeUnauthorized, e.Code)
			require.Contains(t, e.Message, "--api-token-file")
			require.NotContains(t, e.Message, token, "an answer never echoes the token")
		}
	}
}
