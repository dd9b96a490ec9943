package main

import (
	"errors"
	"flag"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseArgsInterleaved(t *testing.T) {
	parse := func(args ...string) ([]string, string, bool, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		s := fs.String("s", "", "")
		b := fs.Bool("b", false, "")
		pos, err := parseArgs(fs, args)
		return pos, *s, *b, err
	}
	pos, s, b, err := parse("k", "-s", "x", "v", "-b")
	require.NoError(t, err)
	require.Equal(t, []string{"k", "v"}, pos)
	require.Equal(t, "x", s)
	require.True(t, b)

	// After "--" everything is positional, dashes included.
	pos, _, b, err = parse("-b", "--", "k", "-5", "-s")
	require.NoError(t, err)
	require.Equal(t, []string{"k", "-5", "-s"}, pos)
	require.True(t, b)

	// "-" (stdin) is an argument, not a flag.
	pos, _, _, err = parse("k", "-")
	require.NoError(t, err)
	require.Equal(t, []string{"k", "-"}, pos)

	_, _, _, err = parse("k", "-nope")
	var u errUsage
	require.True(t, errors.As(err, &u))
	_, _, _, err = parse("-h")
	require.ErrorIs(t, err, flag.ErrHelp)
}

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
