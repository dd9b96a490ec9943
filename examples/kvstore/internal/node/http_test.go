package node

import (
	"testing"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/stretchr/testify/require"
)

// TestBadBodiesAreExplainedInTheAPIsTerms: what a client sent wrong is
// said with the API's field names and JSON's types, never Go's.
func TestBadBodiesAreExplainedInTheAPIsTerms(t *testing.T) {
	for body, want := range map[string]string{
		`{"value": 5}`:               `"value" must be a string, not number`,
		`{"expected_revision": "x"}`: `"expected_revision" must be a number, not string`,
		`[1]`:                        `the body must be an object, not array`,
		`{"value": `:                 `ends in the middle of its JSON`,
		`{"value": "a"} x`:           `more than one JSON value`,
		`{"value": "a",}`:            `invalid JSON at byte 15`,
		`{"colour": "blue"}`:         `unknown field "colour"`,
		``:                           `the body is empty`,
	} {
		var req api.CASRequest
		e := decodeJSON([]byte(body), &req)
		require.NotNil(t, e, body)
		require.Contains(t, e.Message, want, body)
		require.NotContains(t, e.Message, "api.", body)
		require.NotContains(t, e.Message, "Go ", body)
	}
}
