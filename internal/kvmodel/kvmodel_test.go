package kvmodel

import (
	"testing"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"
)

func put(client int, call, ret int64, key, value string) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: Input{Put: true, Key: key, Value: value}, Call: call, Output: Output{}, Return: ret}
}

func get(client int, call, ret int64, key string, out Output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: Input{Key: key}, Call: call, Output: out, Return: ret}
}

func TestModel(t *testing.T) {
	ok := []porcupine.Operation{
		get(0, 0, 1, "a", Output{}),
		put(1, 2, 5, "a", "x"),
		get(0, 3, 4, "a", Output{Found: true, Value: "x"}), // concurrent with the put
		put(1, 6, 7, "b", "y"),
		get(0, 8, 9, "a", Output{Found: true, Value: "x"}), // keys are independent
	}
	require.True(t, porcupine.CheckOperations(Model, ok))

	stale := []porcupine.Operation{
		put(1, 0, 1, "a", "x"),
		put(1, 2, 3, "a", "y"),
		get(0, 4, 5, "a", Output{Found: true, Value: "x"}),
	}
	require.False(t, porcupine.CheckOperations(Model, stale), "a get after a completed put saw an older value")

	// An empty value is not the same as no value.
	empty := []porcupine.Operation{
		put(1, 0, 1, "a", ""),
		get(0, 2, 3, "a", Output{}),
	}
	require.False(t, porcupine.CheckOperations(Model, empty), "a get after a put said not found")
}
