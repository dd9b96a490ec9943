package creds

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// DemoSecretFile is the name of a demo's cluster secret, in its data
// directory.
const DemoSecretFile = "cluster.secret"

// MakeDemoSecret makes a demo's cluster secret at path on the first run:
// 32 random bytes, hex-encoded so that it can be copied to another machine
// as text, readable by the user alone. A later run keeps it, so that the
// nodes' data and the secret stay together.
func MakeDemoSecret(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("make the demo's cluster secret: %w", err)
	}
	b := make([]byte, 32)
	rand.Read(b) // crypto/rand never returns an error; it crashes instead
	_, err = fmt.Fprintf(f, "%s\n", hex.EncodeToString(b))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("make the demo's cluster secret: %w", err)
	}
	return nil
}
