package meta

import (
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rago-raft/rago/internal/wire"
)

// Server is one directory record: a Raft server that lives on this node.
type Server struct {
	UID           string
	ServerName    string // the registered actor name
	ClusterName   string
	MachineConfig []byte     // opaque to the store: how to rebuild the machine
	Members       []ServerID // the last known member list, if the caller keeps one
	// InitialMembers is the member list the server was created with (the
	// cluster's first configuration; empty for a server that joined). It
	// never changes. Records of version 1 had none: they read as Members.
	InitialMembers []ServerID
}

// PutServer adds or replaces the directory record of srv.UID (synced).
func (s *Store) PutServer(srv Server) error {
	if err := checkUID(srv.UID); err != nil {
		return err
	}
	if err := s.db.Set(key(kindDirectory, srv.UID), encodeServer(srv), pebble.Sync); err != nil {
		return fmt.Errorf("meta: put server %s: %w", srv.UID, err)
	}
	return nil
}

// SetServerMembers sets the member list of uid's directory record
// (synced), and reports whether it wrote anything. A list equal to the
// recorded one is not written again: a restarted node re-applies the
// configuration entries of every server it hosts, and a synced write for
// each held up a thousand servers' restart. A missing record (the server
// was deleted) is left missing.
func (s *Store) SetServerMembers(uid string, members []ServerID) (bool, error) {
	if err := checkUID(uid); err != nil {
		return false, err
	}
	srv, ok, err := s.Server(uid)
	if err != nil || !ok {
		return false, err
	}
	if slices.Equal(srv.Members, members) {
		return false, nil
	}
	srv.Members = members
	return true, s.PutServer(srv)
}

// DeleteServer removes the directory record of uid (synced). Deleting a
// missing record is not an error.
func (s *Store) DeleteServer(uid string) error {
	if err := checkUID(uid); err != nil {
		return err
	}
	if err := s.db.Delete(key(kindDirectory, uid), pebble.Sync); err != nil {
		return fmt.Errorf("meta: delete server %s: %w", uid, err)
	}
	return nil
}

// Server returns the directory record of uid; ok is false if there is none.
func (s *Store) Server(uid string) (srv Server, ok bool, err error) {
	v, ok, err := s.get(key(kindDirectory, uid))
	if err != nil || !ok {
		return Server{}, false, err
	}
	srv, err = decodeServer(uid, v)
	if err != nil {
		return Server{}, false, err
	}
	return srv, true, nil
}

// Servers lists every directory record, in UID order.
func (s *Store) Servers() ([]Server, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindDirectory}, UpperBound: []byte{kindDirectory + 1}})
	if err != nil {
		return nil, fmt.Errorf("meta: list servers: %w", err)
	}
	defer it.Close()
	var out []Server
	for ok := it.First(); ok; ok = it.Next() {
		uid := string(it.Key()[1:])
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("meta: list servers: %w", err)
		}
		srv, err := decodeServer(uid, v)
		if err != nil {
			return nil, err
		}
		out = append(out, srv)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("meta: list servers: %w", err)
	}
	return out, nil
}

// directoryVersion is the version byte of directory records this code
// writes; version 1 records (no initial members) are still read.
const directoryVersion = 2

func encodeServer(srv Server) []byte {
	b := []byte{directoryVersion}
	b = wire.AppendString(b, srv.ServerName)
	b = wire.AppendString(b, srv.ClusterName)
	b = wire.AppendBytes(b, srv.MachineConfig)
	b = appendIDs(b, srv.Members)
	return appendIDs(b, srv.InitialMembers)
}

func appendIDs(b []byte, ids []ServerID) []byte {
	b = wire.AppendUvarint(b, uint64(len(ids)))
	for _, m := range ids {
		b = wire.AppendString(b, m.Name)
		b = wire.AppendString(b, m.Node)
	}
	return b
}

func readIDs(r *wire.Reader) []ServerID {
	n := r.Len(2) // each member is at least two empty strings
	if n == 0 {
		return nil
	}
	ids := make([]ServerID, n)
	for i := range ids {
		ids[i].Name = r.String()
		ids[i].Node = r.String()
	}
	return ids
}

// decodeServer decodes a directory value; it never panics on bad input.
func decodeServer(uid string, v []byte) (Server, error) {
	r := wire.NewReader(v)
	ver := r.Uint8()
	if ver != 1 && ver != directoryVersion && r.Err() == nil {
		r.Fail("unknown version %d", ver)
	}
	srv := Server{UID: uid}
	srv.ServerName = r.String()
	srv.ClusterName = r.String()
	srv.MachineConfig = r.BytesCopy()
	srv.Members = readIDs(r)
	if ver == 1 {
		srv.InitialMembers = srv.Members
	} else {
		srv.InitialMembers = readIDs(r)
	}
	if err := r.Done(); err != nil {
		return Server{}, fmt.Errorf("%w: directory record of %s: %w", ErrCorrupt, uid, err)
	}
	return srv, nil
}
