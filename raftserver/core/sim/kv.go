package sim

import (
	"bytes"
	"fmt"
	"math"

	"github.com/anishathalye/porcupine"
)

// The simulated machine is a key-value map; commands are puts.

func encodePut(key, value string) []byte {
	return []byte("p\x00" + key + "\x00" + value)
}

func decodePut(b []byte) (string, string, bool) {
	parts := bytes.SplitN(b, []byte{0}, 3)
	if len(parts) != 3 || string(parts[0]) != "p" {
		return "", "", false
	}
	return string(parts[1]), string(parts[2]), true
}

type kvInput struct {
	put   bool
	key   string
	value string
}

// kvModel is the sequential specification for porcupine, partitioned by
// key. Outputs are the value read (gets) or "" (puts).
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			k := op.Input.(kvInput).key
			if _, ok := byKey[k]; !ok {
				order = append(order, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, k := range order {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(kvInput)
		if in.put {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(kvInput)
		if in.put {
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %q", in.key, output)
	},
}

// checkLinearizable adds the puts of unknown outcome (which may take effect
// at any time after their call) and runs porcupine.
func (w *World) checkLinearizable() bool {
	ops := append([]porcupine.Operation(nil), w.history...)
	for _, o := range w.unknown {
		ops = append(ops, porcupine.Operation{
			ClientId: o.client, Input: kvInput{put: true, key: o.key, value: o.value},
			Call: o.call, Output: "", Return: math.MaxInt64 / 2,
		})
	}
	return porcupine.CheckOperations(kvModel, ops)
}
