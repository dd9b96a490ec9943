// Package nodedir checks the addresses that name the examples' nodes and
// keeps what a node's data directory remembers of its node: its id and
// Raft address, so that a restart with other flags fails clearly instead
// of starting a stranger on another node's data (rago knows a member by
// its name and address).
package nodedir

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// File is the name of the identity file in a node's data directory.
const File = "node.json"

// CheckAddress checks that addr is host:port with an explicit host and a
// non-zero port: a Raft address names its node, so it cannot be left to
// the system to pick.
func CheckAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", addr, err)
	}
	if host == "" || port == "" || port == "0" {
		return fmt.Errorf("%q needs an explicit host and a non-zero port: it names the node", addr)
	}
	return nil
}

// OtherNodeError reports a data directory that belongs to another node.
type OtherNodeError struct {
	Dir      string
	ID, Raft string // the node the directory belongs to
}

func (e *OtherNodeError) Error() string {
	return fmt.Sprintf("the data in %s belongs to node %s at %s; start it with --id %s --raft %s, or use another --data",
		e.Dir, e.ID, e.Raft, e.ID, e.Raft)
}

type identity struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
}

// Claim binds dir to the node id at raft: it creates dir and its identity
// file if there is none, durably, and otherwise checks that the file names
// this node (an *OtherNodeError if not).
func Claim(dir, id, raft string) error {
	path := filepath.Join(dir, File)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return create(dir, path, identity{ID: id, Raft: raft})
	}
	if err != nil {
		return err
	}
	var was identity
	if err := json.Unmarshal(b, &was); err != nil {
		return fmt.Errorf("%s does not decode: %w", path, err)
	}
	if was.ID != id || was.Raft != raft {
		return &OtherNodeError{Dir: dir, ID: was.ID, Raft: was.Raft}
	}
	return nil
}

// create writes the identity file through a temporary file, synced before
// the rename and the directory after it, so that a crash leaves either no
// file (claimed again at the next start) or the whole of it, never an
// empty one that would keep the node from starting.
func create(dir, path string, id identity) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(id)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("record the node's identity in %s: %w", dir, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
