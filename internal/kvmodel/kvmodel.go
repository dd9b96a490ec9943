// Package kvmodel is the sequential specification of a key-value store for
// porcupine's linearizability checker, shared by the host simulation
// (raftserver) and the kvstore example's process tests, so both
// judge their histories by the same rules. It is test support: nothing in
// a program built on rago imports it.
package kvmodel

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// Input is one operation of a history: a put of Value under Key, or (Put
// false) a get of Key.
type Input struct {
	Put   bool
	Key   string
	Value string
}

// Output is what a get saw: whether Key held a value, and that value. A
// put's output is the zero Output. It is also the model's state per key.
type Output struct {
	Found bool
	Value string
}

// Model is a register per key: a get returns the last value put, or not
// found before any put. Histories are partitioned by key, which keeps
// porcupine's search small: keys are independent registers.
var Model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(Input).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return Output{} },
	Step: func(state, input, output any) (bool, any) {
		s, in := state.(Output), input.(Input)
		if in.Put {
			return true, Output{Found: true, Value: in.Value}
		}
		return output.(Output) == s, s
	},
	DescribeOperation: func(input, output any) string {
		in := input.(Input)
		if in.Put {
			return fmt.Sprintf("put(%s, %s)", in.Key, in.Value)
		}
		out := output.(Output)
		return fmt.Sprintf("get(%s) -> %v %q", in.Key, out.Found, out.Value)
	},
}
