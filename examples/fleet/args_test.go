package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/examples/internal/exampletest"
)

// TestServeRefusesBadCommandLines: serve refuses to start without
// credentials unless --insecure is given, and refuses flags that cannot
// be right; each is a usage mistake (status 2) found before anything
// starts.
func TestServeRefusesBadCommandLines(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "s")
	require.NoError(t, os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef\n"), 0o600))
	base := []string{"serve", "--id", "n1", "--raft", "127.0.0.1:1", "--http", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--seeds", "127.0.0.1:1"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no credentials", base, []string{"no credentials for the Raft port", "--secret-file FILE", "--insecure", "go run ./examples/kvstore certs -h"}},
		{"insecure with a secret", append(base, "--insecure", "--secret-file", secret), []string{"--insecure turns authentication off"}},
		{"no seeds", []string{"serve", "--id", "n1", "--raft", "127.0.0.1:1", "--http", "127.0.0.1:0", "--data", dir, "--insecure"}, []string{"--seeds is required"}},
		{"a positional argument", append(base, "--insecure", "extra"), []string{`unexpected argument "extra"`}},
		{"a bad log level", append(base, "--insecure", "--log-level", "loud"), []string{"--log-level"}},
		{"no shards", append(base, "--insecure", "--shards", "0"), []string{"--shards 0: use 1 to"}},
	} {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		require.Equal(t, 2, code, "%s: stdout %q stderr %q", tc.name, out.String(), errOut.String())
		for _, w := range tc.want {
			require.Contains(t, errOut.String(), w, tc.name)
		}
		require.Contains(t, errOut.String(), "Run 'fleet serve -h' for help.", tc.name)
	}
	require.NoDirExists(t, filepath.Join(dir, "data"), "nothing was created")

	// A mistake found when the node starts is an error (status 1).
	var out, errOut bytes.Buffer
	code := run([]string{"serve", "--id", "n 1", "--raft", "127.0.0.1:1", "--http", "127.0.0.1:0", "--data", dir, "--seeds", "127.0.0.1:1", "--insecure"}, &out, &errOut)
	require.Equal(t, 1, code)
	require.Contains(t, errOut.String(), `--id "n 1"`)

	for _, args := range [][]string{{"serve", "-h"}, {"help"}, {"help", "demo"}, {"--help"}} {
		out.Reset()
		errOut.Reset()
		require.Equal(t, 0, run(args, &out, &errOut), "%v", args)
	}
	require.Equal(t, 2, run([]string{"nope"}, &out, &errOut))
	require.Equal(t, 2, run(nil, &out, &errOut))
}

// TestServeWithoutCredentialsExits: the process itself exits with status
// 2 and the message, and listens on nothing meanwhile.
func TestServeWithoutCredentialsExits(t *testing.T) {
	raft, httpAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "serve", "--id", "n1", "--raft", raft, "--http", httpAddr,
		"--data", filepath.Join(t.TempDir(), "d"), "--seeds", raft)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "serve should fail; output:\n%s", out)
	require.Equal(t, 2, exit.ExitCode(), "%s", out)
	require.Contains(t, string(out), "fleet serve: no credentials for the Raft port")
	for _, a := range []string{raft, httpAddr} {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err == nil {
			c.Close()
		}
		require.Error(t, err, "nothing listens on %s", a)
	}
}

func freeAddr(t *testing.T) string { return exampletest.FreeAddr(t) }
