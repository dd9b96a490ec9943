package actor

import (
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
)

// Codec makes a message type T sendable to other nodes. Register one per
// type, usually in an init function of the package that defines T.
//
// Tag names the type on the wire and must be unique in the program; tags
// 1-63 are reserved for this package. Version is written with every
// message and handed to Decode, so a newer build can still read what an
// older one wrote. Decode must reject malformed input with an error and
// must not keep data after returning unless it copied it: data aliases a
// network buffer.
//
// A message whose version is outside [MinVersion, Version] is refused
// before Decode runs, with a *VersionError, and never delivered: a node
// must not guess at a layout it does not know.
type Codec[T any] struct {
	Tag     uint16
	Version uint8
	// MinVersion is the oldest version Decode still reads; 0 means
	// Version only.
	MinVersion uint8
	Encode     func(b []byte, m T) []byte
	Decode     func(version uint8, data []byte) (T, error)
}

// VersionError reports a connection, frame or message of a version this
// node does not speak. errors.Is matches it with ErrUnsupportedVersion and
// ErrBadMessage. Codecs return one from Decode for versions they do not
// read.
type VersionError struct {
	// What was refused: "connection", "frame" or a message type.
	What string
	// Tag is the message's codec tag (0 for connections and frames).
	Tag uint16
	// Got is the version received; Min and Max bound the versions this
	// node speaks.
	Got, Min, Max uint8
}

// Error says what was refused, e.g. "frame version 3, this node speaks 1".
func (e *VersionError) Error() string {
	speaks := fmt.Sprint(e.Max)
	if e.Min < e.Max {
		speaks = fmt.Sprintf("%d to %d", e.Min, e.Max)
	}
	what := e.What
	if e.Tag != 0 {
		what = fmt.Sprintf("%s (tag %d)", e.What, e.Tag)
	}
	return fmt.Sprintf("actor: %s version %d, this node speaks %s", what, e.Got, speaks)
}

// Is makes errors.Is match ErrUnsupportedVersion and ErrBadMessage.
func (e *VersionError) Is(target error) bool {
	return target == ErrUnsupportedVersion || target == ErrBadMessage
}

// reservedTags is the range of tags used by this package's own codecs.
const reservedTags = 64

type codecEntry struct {
	tag     uint16
	version uint8
	minimum uint8 // oldest version decoded
	typ     reflect.Type
	encode  func(b []byte, m any) []byte
	decode  func(version uint8, data []byte) (any, error)
}

type codecTable struct {
	byType map[reflect.Type]*codecEntry
	byTag  map[uint16]*codecEntry
}

// codecs is replaced as a whole on every registration (copy on write), so
// the hot paths read it with one atomic load and no lock.
var (
	codecs   atomic.Pointer[codecTable]
	codecsMu sync.Mutex
)

func init() {
	codecs.Store(&codecTable{byType: map[reflect.Type]*codecEntry{}, byTag: map[uint16]*codecEntry{}})
	mustRegisterBuiltin(Codec[[]byte]{
		Tag: 1, Version: 1,
		Encode: func(b []byte, m []byte) []byte { return append(b, m...) },
		Decode: func(v uint8, data []byte) ([]byte, error) {
			if v != 1 {
				return nil, &VersionError{What: "[]uint8", Tag: 1, Got: v, Min: 1, Max: 1}
			}
			return append([]byte(nil), data...), nil
		},
	})
	mustRegisterBuiltin(Codec[string]{
		Tag: 2, Version: 1,
		Encode: func(b []byte, m string) []byte { return append(b, m...) },
		Decode: func(v uint8, data []byte) (string, error) {
			if v != 1 {
				return "", &VersionError{What: "string", Tag: 2, Got: v, Min: 1, Max: 1}
			}
			return string(data), nil
		},
	})
}

// Register makes T sendable between nodes. It fails with ErrCodecConflict
// if the tag or the type is taken, and with ErrInvalidConfig for a reserved
// tag or missing functions.
func Register[T any](c Codec[T]) error {
	if c.Tag < reservedTags {
		return fmt.Errorf("%w: tag %d is reserved (tags below %d belong to package actor)", ErrInvalidConfig, c.Tag, reservedTags)
	}
	return register(c)
}

// MustRegister is Register for init functions: it panics on error, which
// can only be a programming mistake (a duplicate or reserved tag).
func MustRegister[T any](c Codec[T]) {
	if err := Register(c); err != nil {
		panic(err)
	}
}

func mustRegisterBuiltin[T any](c Codec[T]) {
	if err := register(c); err != nil {
		panic(err)
	}
}

func register[T any](c Codec[T]) error {
	if c.Encode == nil || c.Decode == nil {
		return fmt.Errorf("%w: codec for tag %d needs Encode and Decode", ErrInvalidConfig, c.Tag)
	}
	minimum := c.MinVersion
	if minimum == 0 {
		minimum = c.Version
	}
	if minimum > c.Version {
		return fmt.Errorf("%w: codec for tag %d has MinVersion %d above Version %d", ErrInvalidConfig, c.Tag, minimum, c.Version)
	}
	typ := reflect.TypeFor[T]()
	e := &codecEntry{
		tag:     c.Tag,
		version: c.Version,
		minimum: minimum,
		typ:     typ,
		encode:  func(b []byte, m any) []byte { return c.Encode(b, m.(T)) },
		decode: func(v uint8, data []byte) (any, error) {
			m, err := c.Decode(v, data)
			if err != nil {
				return nil, err
			}
			return m, nil
		},
	}
	codecsMu.Lock()
	defer codecsMu.Unlock()
	old := codecs.Load()
	if prev, ok := old.byTag[c.Tag]; ok {
		return fmt.Errorf("%w: tag %d already used by %v", ErrCodecConflict, c.Tag, prev.typ)
	}
	if prev, ok := old.byType[typ]; ok {
		return fmt.Errorf("%w: type %v already registered with tag %d", ErrCodecConflict, typ, prev.tag)
	}
	next := &codecTable{
		byType: make(map[reflect.Type]*codecEntry, len(old.byType)+1),
		byTag:  make(map[uint16]*codecEntry, len(old.byTag)+1),
	}
	for k, v := range old.byType {
		next.byType[k] = v
	}
	for k, v := range old.byTag {
		next.byTag[k] = v
	}
	next.byType[typ] = e
	next.byTag[c.Tag] = e
	codecs.Store(next)
	return nil
}

// codecFor returns the codec registered for msg's dynamic type.
func codecFor(msg any) (*codecEntry, error) {
	e, ok := codecs.Load().byType[reflect.TypeOf(msg)]
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrNotSerializable, msg)
	}
	return e, nil
}

// encodeMessage runs a codec's Encode, turning a panic in user code into
// an error so a bad message cannot take the sender down.
func encodeMessage(e *codecEntry, b []byte, msg any) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: encoding %T panicked: %v", ErrNotSerializable, msg, r)
		}
	}()
	return e.encode(b, msg), nil
}

// decodeMessage looks the tag up and runs its Decode, turning unknown tags,
// errors and panics into ErrBadMessage, and versions the codec does not
// read into a *VersionError.
func decodeMessage(tag uint16, version uint8, data []byte) (msg any, err error) {
	e, ok := codecs.Load().byTag[tag]
	if !ok {
		return nil, fmt.Errorf("%w: unknown message tag %d", ErrBadMessage, tag)
	}
	if version < e.minimum || version > e.version {
		return nil, &VersionError{What: e.typ.String(), Tag: tag, Got: version, Min: e.minimum, Max: e.version}
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("%w: decoding %v panicked: %v", ErrBadMessage, e.typ, r)
		}
	}()
	m, err := e.decode(version, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v (tag %d): %w", ErrBadMessage, e.typ, tag, err)
	}
	return m, nil
}

// Encode encodes msg with the codec registered for its type and returns
// what a frame carries for it: the codec's tag and version and the payload.
// It fails with ErrNotSerializable. With Decode it lets a package fuzz its
// codecs as a node runs them.
func Encode(msg Message) (tag uint16, version uint8, payload []byte, err error) {
	e, err := codecFor(msg)
	if err != nil {
		return 0, 0, nil, err
	}
	payload, err = encodeMessage(e, nil, msg)
	if err != nil {
		return 0, 0, nil, err
	}
	return e.tag, e.version, payload, nil
}

// Decode decodes a payload as a node decodes a message from another node:
// an unknown tag, a version the codec does not read (a *VersionError),
// a Decode error or panic all fail it with an error wrapping
// ErrBadMessage. The result shares nothing with payload unless the
// codec's Decode keeps it.
func Decode(tag uint16, version uint8, payload []byte) (Message, error) {
	return decodeMessage(tag, version, payload)
}

// Roundtrip encodes msg with the codec registered for its type and decodes
// the bytes again, as a message to another node would be: the result shares
// nothing with msg. Tests use it to check codecs, and simulations to carry
// messages between simulated nodes. It fails with ErrNotSerializable or
// ErrBadMessage.
func Roundtrip(msg Message) (Message, error) {
	e, err := codecFor(msg)
	if err != nil {
		return nil, err
	}
	b, err := encodeMessage(e, nil, msg)
	if err != nil {
		return nil, err
	}
	return decodeMessage(e.tag, e.version, b)
}
