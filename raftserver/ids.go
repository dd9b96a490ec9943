package raftserver

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/raftserver/core"
)

// ServerID names one member of one cluster: the name its server process is
// registered under and the node (host:port) it lives on, as
// ServerID{Name: "orders-1", Node: "10.0.0.5:7001"}. It outlives restarts
// of the server. The zero value means nobody (no leader known).
//
// It is the Raft core's type (core.ServerID), so the same value travels
// through both packages. Its methods: IsZero reports the zero value, and
// String renders it as name@node ("none" for the zero value).
type ServerID = core.ServerID

// Ref returns the process ref of a server.
func Ref(id ServerID) actor.Ref { return actor.Ref{Name: id.Name, Node: id.Node} }

// IDOf returns the ServerID a process ref names.
func IDOf(ref actor.Ref) ServerID { return ServerID{Name: ref.Name, Node: ref.Node} }

// incarnationOf returns the core's incarnation number of the replica with
// UID uid (core.Config.Incarnation): 64 bits of its hash, never 0. Two UIDs
// collide with negligible odds (96 random bits go into each).
func incarnationOf(uid string) uint64 {
	h := sha256.Sum256([]byte(uid))
	return max(binary.BigEndian.Uint64(h[:8]), 1)
}

// newUID makes a filename-safe identity for one incarnation of a server:
// the server name reduced to [A-Za-z0-9_-] and 96 random bits. A server
// that is deleted and created again gets a new UID, so its old data on disk
// can never be mistaken for the new one's.
func newUID(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		}
		if b.Len() >= 32 {
			break
		}
	}
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	return b.String() + "_" + base64.RawURLEncoding.EncodeToString(rnd[:])
}
