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
)

// writeFile writes a file of the given mode (exactly: WriteFile's mode is
// cut by the umask).
func writeFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), mode))
	require.NoError(t, os.Chmod(path, mode))
	return path
}

// TestNodeCommandsRefuseAnOpenRaftPort: serve, join and restore refuse to
// start without credentials unless --insecure is given, saying what to
// pass, and refuse flags and files that cannot be right; each is a usage
// mistake (status 2) found before anything starts.
func TestNodeCommandsRefuseAnOpenRaftPort(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, filepath.Join(dir, "good.secret"), "0123456789abcdef0123456789abcdef\n", 0o600)
	short := writeFile(t, filepath.Join(dir, "short.secret"), "too short\n", 0o600)
	open := writeFile(t, filepath.Join(dir, "open.secret"), "0123456789abcdef0123456789abcdef\n", 0o644)
	token := writeFile(t, filepath.Join(dir, "short.token"), "tiny", 0o600)
	node := func(cmd string) []string {
		args := []string{cmd, "--id", "n1", "--raft", "127.0.0.1:1", "--http", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--log-level", "error"}
		switch cmd {
		case "serve":
			return append(args, "--peers", "n1=127.0.0.1:1")
		case "join":
			return append(args, "--via", "http://127.0.0.1:1")
		}
		return append(args, "--from", filepath.Join(dir, "none.backup"))
	}
	for _, cmd := range []string{"serve", "join", "restore"} {
		for _, tc := range []struct {
			name  string
			extra []string
			want  []string
		}{
			{"no credentials", nil, []string{"no credentials for the Raft port", "--secret-file FILE", "--tls-ca FILE --tls-cert FILE --tls-key FILE", "--insecure", "head -c 32 /dev/urandom"}},
			{"part of the TLS flags", []string{"--tls-ca", good, "--tls-cert", good}, []string{"go together", "--tls-key"}},
			{"insecure with a secret", []string{"--insecure", "--secret-file", good}, []string{"--insecure turns authentication off"}},
			{"insecure-http without TLS", []string{"--secret-file", good, "--insecure-http"}, []string{"--insecure-http goes with --tls-*"}},
			{"a short secret", []string{"--secret-file", short}, []string{"holds 9 bytes", "at least 16"}},
			{"a world-readable secret", []string{"--secret-file", open}, []string{"open to every user", "mode 0644", "chmod 600 " + open}},
			{"a missing secret file", []string{"--secret-file", filepath.Join(dir, "nope")}, []string{"--secret-file", "no such file"}},
			{"a missing certificate", []string{"--tls-ca", good, "--tls-cert", filepath.Join(dir, "nope"), "--tls-key", good}, []string{"--tls-cert", "no such file"}},
			{"a short API token", []string{"--secret-file", good, "--api-token-file", token}, []string{"--api-token-file", "at least 16"}},
		} {
			var out, errOut bytes.Buffer
			code := run(append(node(cmd), tc.extra...), &out, &errOut)
			require.Equal(t, 2, code, "%s, %s: stdout %q stderr %q", cmd, tc.name, out.String(), errOut.String())
			for _, w := range tc.want {
				require.Contains(t, errOut.String(), w, "%s, %s", cmd, tc.name)
			}
			require.Contains(t, errOut.String(), "Run 'kvstore "+cmd+" -h' for help.")
		}
	}
	require.NoDirExists(t, filepath.Join(dir, "data"), "nothing was created")
}

// TestServeWithoutCredentialsExits: the process itself exits with status
// 2 and the message, and listens on nothing meanwhile.
func TestServeWithoutCredentialsExits(t *testing.T) {
	raft, httpAddr := freePort(t), freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "serve", "--id", "n1", "--raft", raft, "--http", httpAddr,
		"--data", filepath.Join(t.TempDir(), "d"), "--peers", "n1="+raft)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "serve should fail; output:\n%s", out)
	require.Equal(t, 2, exit.ExitCode(), "%s", out)
	require.Contains(t, string(out), "kvstore serve: no credentials for the Raft port")
	require.Contains(t, string(out), "--insecure")
	for _, a := range []string{raft, httpAddr} {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err == nil {
			c.Close()
		}
		require.Error(t, err, "nothing listens on %s", a)
	}
}
