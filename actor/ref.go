package actor

import (
	"fmt"
	"strings"
)

// Ref addresses a process: the name it is registered under and the node it
// lives on. It is plain, comparable data with no connection to the process
// itself, so it can be stored, compared, sent to other nodes and used again
// after the process restarted under the same name.
type Ref struct {
	Name string
	Node string
}

// String formats the ref as name@node.
func (r Ref) String() string { return r.Name + "@" + r.Node }

// IsZero reports whether r is the zero Ref.
func (r Ref) IsZero() bool { return r.Name == "" && r.Node == "" }

// ParseRef parses the name@node form String produces. The node part is the
// text after the last '@'.
func ParseRef(s string) (Ref, error) {
	i := strings.LastIndexByte(s, '@')
	if i <= 0 || i == len(s)-1 {
		return Ref{}, fmt.Errorf("%w: %q is not name@node", ErrInvalidName, s)
	}
	return Ref{Name: s[:i], Node: s[i+1:]}, nil
}

// ReplyTo identifies a pending call so that the callee can answer it later
// (Node.Reply), possibly from another process or after other messages. It
// is plain data and may be kept or sent on.
type ReplyTo struct {
	Node string
	ID   uint64
}

// IsZero reports whether rt is the zero ReplyTo.
func (rt ReplyTo) IsZero() bool { return rt.ID == 0 }

// MonitorRef identifies one monitor, as returned by Monitor and carried by
// its Down.
type MonitorRef struct {
	id uint64
}

// IsZero reports whether m is the zero MonitorRef.
func (m MonitorRef) IsZero() bool { return m.id == 0 }

// TimerRef identifies a timer started by Context.SendAfter.
type TimerRef struct {
	id uint64
}

// maxNameLen bounds process names so that a corrupt frame cannot make us
// hash huge strings; names are identifiers, not data.
const maxNameLen = 1024

func validateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalidName)
	case len(name) > maxNameLen:
		return fmt.Errorf("%w: name of %d bytes exceeds %d", ErrInvalidName, len(name), maxNameLen)
	case name[0] == '$':
		return fmt.Errorf("%w: %q: names starting with '$' are reserved", ErrInvalidName, name)
	}
	return nil
}
