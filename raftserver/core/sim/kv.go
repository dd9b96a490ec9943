package sim

import (
	"bytes"
	"math"

	"github.com/anishathalye/porcupine"
	"github.com/rago-raft/rago/internal/kvmodel"
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

// checkLinearizable adds the puts of unknown outcome (which may take effect
// at any time after their call) and runs porcupine.
func (w *World) checkLinearizable() bool {
	ops := append([]porcupine.Operation(nil), w.history...)
	for _, o := range w.unknown {
		ops = append(ops, porcupine.Operation{
			ClientId: o.client, Input: kvmodel.Input{Put: true, Key: o.key, Value: o.value},
			Call: o.call, Output: kvmodel.Output{}, Return: math.MaxInt64 / 2,
		})
	}
	return porcupine.CheckOperations(kvmodel.Model, ops)
}
