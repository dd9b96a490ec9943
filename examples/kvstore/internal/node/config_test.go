package node

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParsePeers(t *testing.T) {
	ps, err := ParsePeers("n1=127.0.0.1:7001, n2=127.0.0.1:7002,")
	require.NoError(t, err)
	require.Equal(t, []Peer{{ID: "n1", Raft: "127.0.0.1:7001"}, {ID: "n2", Raft: "127.0.0.1:7002"}}, ps)

	ps, err = ParsePeers("")
	require.NoError(t, err)
	require.Empty(t, ps)

	for _, bad := range []string{
		"n1",                             // no address
		"n1=127.0.0.1",                   // no port
		"n1=127.0.0.1:0",                 // a port picked at random is no identity
		"n1=127.0.0.1:1,n1=127.0.0.1:2",  // id twice
		"n1=127.0.0.1:1,n2=127.0.0.1:1",  // address twice
		"rago=127.0.0.1:1",               // reserved prefix
		"-x=127.0.0.1:1",                 // bad id
		"n1=127.0.0.1:1,n/2=127.0.0.1:2", // bad id
	} {
		_, err := ParsePeers(bad)
		require.ErrorIs(t, err, ErrConfig, bad)
	}
}

func TestConfigChecks(t *testing.T) {
	good := func() Config {
		return Config{ID: "n1", RaftAddr: "127.0.0.1:7001", HTTPAddr: "127.0.0.1:8001", DataDir: "d",
			Peers:         []Peer{{ID: "n1", Raft: "127.0.0.1:7001"}, {ID: "n2", Raft: "127.0.0.1:7002"}},
			ClusterSecret: []byte("0123456789abcdef0123456789abcdef")}
	}
	c := good()
	require.NoError(t, c.fill())
	require.Equal(t, DefaultMaxValueBytes, c.MaxValueBytes)
	require.Equal(t, DefaultRequestTimeout, c.RequestTimeout)

	for name, mutate := range map[string]func(*Config){
		"no id":                  func(c *Config) { c.ID = "" },
		"no data":                func(c *Config) { c.DataDir = "" },
		"raft port 0":            func(c *Config) { c.RaftAddr = "127.0.0.1:0" },
		"bad http":               func(c *Config) { c.HTTPAddr = "8001" },
		"bad advertised url":     func(c *Config) { c.AdvertiseHTTP = "ftp://x" },
		"value limit too high":   func(c *Config) { c.MaxValueBytes = MaxValueLimit + 1 },
		"negative timeout":       func(c *Config) { c.RequestTimeout = -1 },
		"peers without self":     func(c *Config) { c.Peers = c.Peers[1:] },
		"self at other address":  func(c *Config) { c.Peers[0].Raft = "127.0.0.1:9999" },
		"own address for a peer": func(c *Config) { c.Peers[1].Raft = c.RaftAddr },
		"join with peers":        func(c *Config) { c.Join = true },
		"no credentials":         func(c *Config) { c.ClusterSecret = nil },
		"insecure and a secret":  func(c *Config) { c.Insecure = true },
		"short secret":           func(c *Config) { c.ClusterSecret = []byte("short") },
		"https without tls":      func(c *Config) { c.HTTPS = true },
		"short api token":        func(c *Config) { c.APIToken = "tiny" },
		"api token with a space": func(c *Config) { c.APIToken = "0123456789 abcdef" },
	} {
		c := good()
		mutate(&c)
		require.ErrorIs(t, c.fill(), ErrConfig, name)
	}
}

// TestConfigRefusesAnOpenRaftPortUnlessAskedByName: without credentials a
// node starts only with Insecure, and the refusal says what to pass.
func TestConfigRefusesAnOpenRaftPortUnlessAskedByName(t *testing.T) {
	c := Config{ID: "n1", RaftAddr: "127.0.0.1:7001", HTTPAddr: "127.0.0.1:8001", DataDir: "d", Join: true}
	err := c.fill()
	require.ErrorIs(t, err, ErrConfig)
	for _, flag := range []string{"--secret-file", "--tls-ca", "--insecure"} {
		require.Contains(t, err.Error(), flag)
	}
	c.Insecure = true
	require.NoError(t, c.fill())
	require.Equal(t, "none", c.raftAuth())
}
