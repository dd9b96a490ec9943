package creds

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"
)

// MinAPITokenBytes is the shortest API token accepted: a token is
// compared in constant time, but nothing slows down guessing, so it must
// be long and random enough that guessing is hopeless.
const MinAPITokenBytes = 16

// CheckAPIToken says what is wrong with an API token, if anything. It
// must fit in an HTTP header as it is, so it is printable ASCII without
// spaces.
func CheckAPIToken(token string) error {
	if len(token) < MinAPITokenBytes {
		return fmt.Errorf("the API token has %d characters, use at least %d random ones", len(token), MinAPITokenBytes)
	}
	for i := 0; i < len(token); i++ {
		if b := token[i]; b <= ' ' || b > '~' {
			return fmt.Errorf("the API token holds a character that cannot go in an HTTP header (byte %d is 0x%02x): use letters, digits and punctuation", i, b)
		}
	}
	return nil
}

// Token is an API token kept as its SHA-256 digest. The zero Token (no
// token configured) accepts every request.
type Token struct{ digest []byte }

// NewToken keeps token's digest; "" makes the zero Token.
func NewToken(token string) Token {
	if token == "" {
		return Token{}
	}
	d := sha256.Sum256([]byte(token))
	return Token{digest: d[:]}
}

// Set reports whether a token is configured.
func (t Token) Set() bool { return t.digest != nil }

// Check compares the bearer token of an Authorization header with t. It
// reports whether the header carries t (always true for the zero Token),
// and whether it carried a token at all, for the caller's message. The
// comparison is of SHA-256 digests: subtle.ConstantTimeCompare returns at
// once on a length mismatch, which would tell a guesser the token's
// length; two digests always have the same one.
func (t Token) Check(authorization string) (ok, given bool) {
	if t.digest == nil {
		return true, false
	}
	scheme, token, _ := strings.Cut(authorization, " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return false, false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], t.digest) == 1, true
}
