package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int{"1048576": 1 << 20, "512KiB": 512 << 10, "1MiB": 1 << 20, "2M": 2 << 20, "7K": 7 << 10} {
		var b byteSize
		require.NoError(t, b.Set(in), in)
		require.Equal(t, want, int(b), in)
	}
	for _, in := range []string{"", "0", "-1", "1GiB", "lots"} {
		var b byteSize
		require.Error(t, b.Set(in), in)
	}
	b := byteSize(1 << 20)
	require.Equal(t, "1MiB", b.String())
	b = byteSize(1000)
	require.Equal(t, "1000", b.String())
}
