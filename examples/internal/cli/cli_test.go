package cli

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
		pos, err := ParseArgs(fs, args)
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
	var u *UsageError
	require.True(t, errors.As(err, &u))
	_, _, _, err = parse("-h")
	require.ErrorIs(t, err, flag.ErrHelp)
}
