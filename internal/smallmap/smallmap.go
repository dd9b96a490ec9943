// Package smallmap is a map for the many places that hold a handful of
// entries per process or per server: monitors a process holds or is
// watched by, its pending timers, the peers a server watches. An idle node
// may have thousands of such processes, and a Go map with even one entry
// costs a few hundred bytes (its header and a group of eight slots), where
// a slice of two or three entries costs a few dozen. Map keeps up to
// maxSmall entries in a slice, searched linearly, and moves them into a Go
// map when more come, so a process that holds thousands of entries (a
// supervisor's children, a failure detector's watchers) pays for a map as
// before.
package smallmap

import "iter"

// maxSmall is the most entries kept in the slice. Eight comparisons of
// small keys are about as fast as a map lookup.
const maxSmall = 8

type entry[K comparable, V any] struct {
	k K
	v V
}

// Map is a map from K to V. The zero value is an empty map ready to use.
// It is not safe for concurrent use. A copy of a Map shares its entries'
// storage: once copied, only one of the two may be used (a Map may be
// moved to another variable, the old one reset to the zero Map).
type Map[K comparable, V any] struct {
	small []entry[K, V] // the entries while there are at most maxSmall
	big   map[K]V       // all entries once there were more; then small is nil
}

// Len returns the number of entries.
func (m *Map[K, V]) Len() int {
	if m.big != nil {
		return len(m.big)
	}
	return len(m.small)
}

// Get returns the value of k and whether it is present.
func (m *Map[K, V]) Get(k K) (V, bool) {
	if m.big != nil {
		v, ok := m.big[k]
		return v, ok
	}
	for i := range m.small {
		if m.small[i].k == k {
			return m.small[i].v, true
		}
	}
	var zero V
	return zero, false
}

// Has reports whether k is present.
func (m *Map[K, V]) Has(k K) bool {
	_, ok := m.Get(k)
	return ok
}

// Set sets the value of k.
func (m *Map[K, V]) Set(k K, v V) {
	if m.big != nil {
		m.big[k] = v
		return
	}
	for i := range m.small {
		if m.small[i].k == k {
			m.small[i].v = v
			return
		}
	}
	if len(m.small) < maxSmall {
		m.small = append(m.small, entry[K, V]{k, v})
		return
	}
	m.big = make(map[K]V, 2*maxSmall)
	for _, e := range m.small {
		m.big[e.k] = e.v
	}
	m.big[k] = v
	m.small = nil
}

// Delete removes k and returns the value it had, if it was present.
func (m *Map[K, V]) Delete(k K) (V, bool) {
	var zero V
	if m.big != nil {
		v, ok := m.big[k]
		if ok {
			delete(m.big, k)
		}
		return v, ok
	}
	for i := range m.small {
		if m.small[i].k == k {
			v := m.small[i].v
			last := len(m.small) - 1
			copy(m.small[i:], m.small[i+1:])
			m.small[last] = entry[K, V]{} // let go of what it referenced
			m.small = m.small[:last]
			return v, true
		}
	}
	return zero, false
}

// Clear removes every entry and lets go of the memory that held them.
func (m *Map[K, V]) Clear() { *m = Map[K, V]{} }

// All returns the entries; while there are at most eight, in the order
// they were first set, else in map order. The map must not be changed
// during the iteration.
func (m *Map[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		if m.big != nil {
			for k, v := range m.big {
				if !yield(k, v) {
					return
				}
			}
			return
		}
		for _, e := range m.small {
			if !yield(e.k, e.v) {
				return
			}
		}
	}
}
