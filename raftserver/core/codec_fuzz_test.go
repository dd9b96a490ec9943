package core

import (
	"errors"
	"reflect"
	"testing"
)

// fuzzKind fuzzes the decoder of one message type: the input is the body
// after the type tag, so every input exercises that type's decoder. Seeds
// are the sample messages of that type. Inputs that decode must be within
// MaxTerm and MaxIndex and survive a round trip unchanged.
func fuzzKind(f *testing.F, kind msgKind, extra ...Message) {
	for _, m := range append(sampleMessages(), extra...) {
		if m.kind() == kind {
			f.Add(m.AppendBinary(nil)[1:])
		}
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := DecodeMessage(append([]byte{byte(kind)}, body...))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if m.kind() != kind {
			t.Fatalf("tag %d decoded to %T", kind, m)
		}
		if err := checkBounds(m); err != nil {
			t.Fatalf("decoded %#v out of range: %v", m, err)
		}
		if ae, ok := m.(*AppendEntries); ok {
			for i := range ae.Entries {
				if !ae.Entries[i].FramedOK() {
					t.Fatalf("entry %d of %#v is not framed", i, ae)
				}
			}
		}
		again, err := DecodeMessage(m.AppendBinary(nil))
		if err != nil {
			t.Fatalf("re-encoding of %#v does not decode: %v", m, err)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("round trip: %#v became %#v", m, again)
		}
	})
}

func FuzzAppendEntries(f *testing.F) {
	fuzzKind(f, kindAppendEntries, &AppendEntries{Term: MaxTerm, PrevIndex: MaxIndex - 1, PrevTerm: MaxTerm, Commit: MaxIndex,
		Entries: []Entry{{Index: MaxIndex, Term: MaxTerm, Type: EntryNormal, Data: []byte("x")}}})
}

func FuzzAppendReply(f *testing.F) { fuzzKind(f, kindAppendReply) }

func FuzzPreVoteRequest(f *testing.F) {
	fuzzKind(f, kindPreVoteRequest, &PreVoteRequest{Term: MaxTerm, LastIndex: MaxIndex, LastTerm: MaxTerm})
}

func FuzzPreVoteReply(f *testing.F) { fuzzKind(f, kindPreVoteReply) }

func FuzzVoteRequest(f *testing.F) { fuzzKind(f, kindVoteRequest) }

func FuzzVoteReply(f *testing.F) {
	fuzzKind(f, kindVoteReply, &VoteReply{Term: MaxTerm, Granted: true})
}

func FuzzTimeoutNow(f *testing.F) { fuzzKind(f, kindTimeoutNow) }

func FuzzHeartbeat(f *testing.F) {
	fuzzKind(f, kindHeartbeat, &Heartbeat{Term: MaxTerm, Seq: 1 << 63, Commit: MaxIndex})
}

func FuzzHeartbeatReply(f *testing.F) { fuzzKind(f, kindHeartbeatReply) }

func FuzzNotLeader(f *testing.F) { fuzzKind(f, kindNotLeader) }

func FuzzInstallSnapshot(f *testing.F) { fuzzKind(f, kindInstallSnapshot) }
