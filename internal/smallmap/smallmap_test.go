package smallmap

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMapBehavesLikeAGoMap runs random operations on a Map and on a Go map
// side by side, across the switch from the slice to the map and back to
// empty, and checks that they always hold the same entries.
func TestMapBehavesLikeAGoMap(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, seed))
		keys := 4 + rng.IntN(40) // some runs stay small, some grow
		var m Map[int, int]
		want := map[int]int{}
		for op := range 2000 {
			k := rng.IntN(keys)
			switch rng.IntN(3) {
			case 0, 1:
				m.Set(k, op)
				want[k] = op
			case 2:
				v, ok := m.Delete(k)
				wv, wok := want[k]
				delete(want, k)
				if ok != wok || v != wv {
					t.Fatalf("seed %d op %d: Delete(%d) = %d, %v; want %d, %v", seed, op, k, v, ok, wv, wok)
				}
			}
			if m.Len() != len(want) {
				t.Fatalf("seed %d op %d: Len %d, want %d", seed, op, m.Len(), len(want))
			}
			v, ok := m.Get(k)
			if wv, wok := want[k]; ok != wok || v != wv || m.Has(k) != wok {
				t.Fatalf("seed %d op %d: Get(%d) = %d, %v; want %d, %v", seed, op, k, v, ok, wv, wok)
			}
		}
		if got := maps.Collect(m.All()); !maps.Equal(got, want) {
			t.Fatalf("seed %d: All gives %v, want %v", seed, got, want)
		}
		m.Clear()
		if m.Len() != 0 || m.Has(0) {
			t.Fatalf("seed %d: not empty after Clear", seed)
		}
	}
}

// TestSmallMapsKeepOrderAndGrow: up to eight entries iterate in the order
// they were first set (a deletion keeps the others' order); a ninth moves
// them into a Go map.
func TestSmallMapsKeepOrderAndGrow(t *testing.T) {
	var m Map[string, int]
	for i, k := range []string{"a", "b", "c", "d"} {
		m.Set(k, i)
	}
	m.Set("b", 10) // an update keeps its place
	m.Delete("a")
	var order []string
	for k := range m.All() {
		order = append(order, k)
	}
	if want := []string{"b", "c", "d"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range maxSmall {
		m.Set(string(rune('k'+i)), i)
	}
	if m.big == nil || m.small != nil {
		t.Fatalf("%d entries still in the slice", m.Len())
	}
	if v, _ := m.Get("b"); v != 10 || m.Len() != 3+maxSmall {
		t.Fatalf("lost entries when growing: b=%d len=%d", v, m.Len())
	}
	// Stopping an iteration early is honoured in both forms.
	n := 0
	for range m.All() {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("iteration went on after break")
	}
}

// TestDeleteLetsGoOfValues: a deleted entry's slot no longer references
// its value, so what it pointed to can be collected.
func TestDeleteLetsGoOfValues(t *testing.T) {
	var m Map[int, *int]
	for i := range 3 {
		m.Set(i, new(int))
	}
	m.Delete(0)
	if tail := m.small[:cap(m.small)][len(m.small)]; tail.v != nil {
		t.Fatalf("the freed slot still holds %p", tail.v)
	}
}

func BenchmarkGetSmall(b *testing.B) {
	var m Map[uint64, string]
	for i := range uint64(4) {
		m.Set(i, "x")
	}
	for i := 0; b.Loop(); i++ {
		m.Get(uint64(i % 4))
	}
}
