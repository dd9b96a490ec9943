package creds

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckAPIToken(t *testing.T) {
	require.NoError(t, CheckAPIToken("abcdefghijklmnop"))
	require.NoError(t, CheckAPIToken("Zm9vYmFyYmF6cXV4cXV1eA=="))
	require.Error(t, CheckAPIToken("abcdefghijklmno"), "15 characters")
	require.Error(t, CheckAPIToken("abcdefgh ijklmnop"), "a space")
	require.Error(t, CheckAPIToken("abcdefghijklmnop\x00"), "a control character")
	require.Error(t, CheckAPIToken("abcdefghijklmnopé"), "not ASCII")
}

func TestToken(t *testing.T) {
	const token = "s3cret-token-of-some-length"
	ok, given := Token{}.Check("")
	require.True(t, ok, "no token configured: everything passes")
	require.False(t, given)
	tk := NewToken(token)
	require.True(t, tk.Set())
	for header, want := range map[string][2]bool{
		"Bearer " + token:       {true, true},
		"bearer " + token:       {true, true},
		"Bearer " + token + "x": {false, true},
		"Basic " + token:        {false, false},
		"Bearer":                {false, false},
		token:                   {false, false},
		"":                      {false, false},
	} {
		ok, given := tk.Check(header)
		require.Equal(t, want, [2]bool{ok, given}, "%q", header)
	}
}

// TestFlags: the combinations that cannot be right are usage mistakes,
// and the files are checked when loaded.
func TestFlags(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	good := write("good", "0123456789abcdef0123456789abcdef\n", 0o600)
	open := write("open", "0123456789abcdef0123456789abcdef\n", 0o644)
	parse := func(args ...string) (*Flags, error) {
		var f Flags
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f.Register(fs, "writes")
		require.NoError(t, fs.Parse(args))
		_, err := f.Load("prog", nil)
		return &f, err
	}
	for _, args := range [][]string{
		nil,
		{"--insecure", "--secret-file", good},
		{"--tls-ca", good},
		{"--secret-file", good, "--insecure-http"},
		{"--secret-file", open},
		{"--secret-file", filepath.Join(dir, "none")},
		{"--secret-file", write("short", "short", 0o600)},
	} {
		_, err := parse(args...)
		var u *UsageError
		require.True(t, errors.As(err, &u), "%v: %v", args, err)
	}
	_, err := parse()
	require.ErrorContains(t, err, "'prog certs -h'")
	f, err := parse("--secret-file", good)
	require.NoError(t, err)
	require.Equal(t, []string{"--secret-file", good}, f.Args())
	c, err := f.Load("prog", nil)
	require.NoError(t, err)
	require.Equal(t, "0123456789abcdef0123456789abcdef", string(c.ClusterSecret))
	require.Equal(t, "secret", RaftAuth(c.ClusterSecret, c.TLS))
}
