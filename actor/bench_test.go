package actor

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	pa "github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The benchmarks compare this package with raw protoactor-go doing the same
// work in the same run: local send, local call, and send and call to a
// peer in another OS process. Each message is 64 bytes. A send benchmark
// counts a run as done when the receiver confirms it got every message
// (a final call is answered with its count, and FIFO order puts it last).
//
//	go test -run XXX -bench . -benchtime 2000000x ./actor/
//
// docs/benchmarks.md has figures and ratios.

var payload64 = make([]byte, 64)

// benchMarker asks a sink for its count; it is never counted itself.
var benchMarker = []byte("count?")

// raw protoactor side ------------------------------------------------------

type rawSink struct{ count int }

func (s *rawSink) Receive(c pa.Context) {
	switch m := c.Message().(type) {
	case *wrapperspb.BytesValue:
		if string(m.Value) == string(benchMarker) {
			c.Respond(wrapperspb.Bytes([]byte(fmt.Sprint(s.count))))
			s.count = 0
			return
		}
		if c.Sender() != nil {
			c.Respond(m) // a call: echo
			return
		}
		s.count++
	}
}

func rawSystem(tb testing.TB, withRemote bool) (*pa.ActorSystem, func()) {
	sys := pa.NewActorSystem(pa.WithLoggerFactory(func(*pa.ActorSystem) *slogLogger { return discardLogger }))
	if !withRemote {
		return sys, sys.Shutdown
	}
	r := remote.NewRemote(sys, remote.Configure("127.0.0.1", 0))
	r.Start()
	return sys, func() { r.Shutdown(false); sys.Shutdown() }
}

func rawCount(tb testing.TB, sys *pa.ActorSystem, pid *pa.PID, want int) {
	res, err := sys.Root.RequestFuture(pid, wrapperspb.Bytes(benchMarker), time.Minute).Result()
	if err != nil {
		tb.Fatal(err)
	}
	if got := string(res.(*wrapperspb.BytesValue).Value); got != fmt.Sprint(want) {
		tb.Fatalf("sink counted %s, want %d", got, want)
	}
}

// rago side ---------------------------------------------------------------

func ragoSink() Process {
	count := 0
	return ProcessFunc(func(ctx *Context, msg Message) {
		m, ok := msg.([]byte)
		if !ok {
			return
		}
		if string(m) == string(benchMarker) {
			_ = ctx.Reply([]byte(fmt.Sprint(count)))
			count = 0
			return
		}
		if _, isCall := ctx.ReplyTo(); isCall {
			_ = ctx.Reply(m)
			return
		}
		count++
	})
}

func ragoCount(tb testing.TB, n *Node, ref Ref, want int) {
	res, err := n.Call(ref, benchMarker, time.Minute)
	if err != nil {
		tb.Fatal(err)
	}
	if got := string(res.([]byte)); got != fmt.Sprint(want) {
		tb.Fatalf("sink counted %s, want %d", got, want)
	}
}

// peers in other processes --------------------------------------------------

// runBenchPeer serves one sink named "sink" for the remote benchmarks.
func runBenchPeer(kind string) {
	switch kind {
	case "raw":
		sys, _ := rawSystem(nil, true)
		if _, err := sys.Root.SpawnNamed(pa.PropsFromProducer(func() pa.Actor { return &rawSink{} }), "sink"); err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		fmt.Println("READY", sys.Address())
	case "rago":
		cfg := benchAuthConfig(os.Getenv("RAGO_ACTOR_BENCH_AUTH"), []byte(os.Getenv("RAGO_ACTOR_BENCH_CA")),
			testCert{certPEM: []byte(os.Getenv("RAGO_ACTOR_BENCH_CERT")), keyPEM: []byte(os.Getenv("RAGO_ACTOR_BENCH_KEY"))})
		cfg.Address = "127.0.0.1:0"
		n, err := StartNode(cfg)
		if err == nil {
			_, err = n.SpawnNamed("sink", ragoSink())
		}
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		fmt.Println("READY", n.Name())
	}
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

func startBenchPeer(b *testing.B, kind string, env ...string) string {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(append(os.Environ(), "RAGO_ACTOR_BENCH_PEER="+kind), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if !strings.HasPrefix(line, "READY ") {
		b.Fatalf("bench peer: %q", line)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "READY "))
}

func reportRate(b *testing.B, start time.Time) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// benchmarks --------------------------------------------------------------

func BenchmarkLocalSend(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		sys, stop := rawSystem(b, false)
		defer stop()
		pid := sys.Root.Spawn(pa.PropsFromProducer(func() pa.Actor { return &rawSink{} }))
		msg := wrapperspb.Bytes(payload64)
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			sys.Root.Send(pid, msg)
		}
		rawCount(b, sys, pid, b.N)
		reportRate(b, start)
	})
	b.Run("rago", func(b *testing.B) {
		n := startNode(b)
		ref, err := n.Spawn(ragoSink())
		if err != nil {
			b.Fatal(err)
		}
		var msg Message = payload64 // boxed once, like raw's message pointer
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			_ = n.Send(ref, msg)
		}
		ragoCount(b, n, ref, b.N)
		reportRate(b, start)
	})
}

func BenchmarkLocalCall(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		sys, stop := rawSystem(b, false)
		defer stop()
		pid := sys.Root.Spawn(pa.PropsFromProducer(func() pa.Actor { return &rawSink{} }))
		msg := wrapperspb.Bytes(payload64)
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			if _, err := sys.Root.RequestFuture(pid, msg, time.Minute).Result(); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, start)
	})
	b.Run("rago", func(b *testing.B) {
		n := startNode(b)
		ref, err := n.Spawn(ragoSink())
		if err != nil {
			b.Fatal(err)
		}
		var msg Message = payload64
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			if _, err := n.Call(ref, msg, time.Minute); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, start)
	})
}

func BenchmarkRemoteSend(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		addr := startBenchPeer(b, "raw")
		sys, stop := rawSystem(b, true)
		defer stop()
		pid := pa.NewPID(addr, "sink")
		msg := wrapperspb.Bytes(payload64)
		rawCount(b, sys, pid, 0) // connect first
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			sys.Root.Send(pid, msg)
		}
		rawCount(b, sys, pid, b.N)
		reportRate(b, start)
	})
	b.Run("rago", func(b *testing.B) {
		n, ref := ragoSender(b)
		var msg Message = payload64
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			_ = n.Send(ref, msg)
		}
		ragoCount(b, n, ref, b.N)
		reportRate(b, start)
		if d := n.Stats().DroppedQueueFull; d > 0 {
			b.Fatalf("%d messages dropped", d)
		}
	})
}

func BenchmarkRemoteCall(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		addr := startBenchPeer(b, "raw")
		sys, stop := rawSystem(b, true)
		defer stop()
		pid := pa.NewPID(addr, "sink")
		msg := wrapperspb.Bytes(payload64)
		rawCount(b, sys, pid, 0)
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			if _, err := sys.Root.RequestFuture(pid, msg, time.Minute).Result(); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, start)
	})
	b.Run("rago", func(b *testing.B) {
		addr := startBenchPeer(b, "rago")
		n := startNode(b)
		ref := Ref{Name: "sink", Node: addr}
		ragoCount(b, n, ref, 0)
		var msg Message = payload64
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			if _, err := n.Call(ref, msg, time.Minute); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, start)
	})
}

type slogLogger = slog.Logger

var discardLogger = slog.New(slog.DiscardHandler)

// BenchmarkRemoteSendParallel has many goroutines send to one peer at once,
// as a node's servers do: senders must not queue for each other.
func BenchmarkRemoteSendParallel(b *testing.B) {
	n, ref := ragoSender(b)
	var msg Message = payload64
	b.SetParallelism(64)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = n.Send(ref, msg)
		}
	})
	ragoCount(b, n, ref, b.N)
	reportRate(b, start)
	if d := n.Stats().DroppedQueueFull; d > 0 {
		b.Fatalf("%d messages dropped", d)
	}
}

// ragoSender starts a node and a sink peer in another process, connected,
// for the remote send benchmarks; the node stops with the benchmark.
func ragoSender(b *testing.B) (*Node, Ref) {
	addr := startBenchPeer(b, "rago")
	n, err := StartNode(Config{Address: "127.0.0.1:0", LinkQueueBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(n.Stop)
	ref := Ref{Name: "sink", Node: addr}
	ragoCount(b, n, ref, 0)
	return n, ref
}

// Authentication -------------------------------------------------------------

// benchAuthModes are the ways BenchmarkRemoteAuth connects two nodes.
var benchAuthModes = []string{"plain", "tls", "secret", "both"}

// benchAuthConfig is a node's configuration for an authentication mode
// of the benchmarks, with a certificate for 127.0.0.1 where TLS is used.
func benchAuthConfig(mode string, ca []byte, cert testCert) Config {
	var cfg Config
	if mode == "tls" || mode == "both" {
		cfg.TLS = tlsConfigFor(ca, cert)
	}
	if mode == "secret" || mode == "both" {
		cfg.ClusterSecret = testSecret
	}
	return cfg
}

// BenchmarkRemoteAuth measures what authentication costs against plain
// connections, in one run: a stream of 64-byte sends and sequential calls
// to a peer in another OS process, and opening a connection (TCP connect
// and the dialer's side of the handshake, until it sent its proof; the
// peer's last check runs after).
//
//	go test -run XXX -bench RemoteAuth -benchtime 1000000x ./actor/
func BenchmarkRemoteAuth(b *testing.B) {
	ca := newTestCA(b, "bench CA")
	cert := ca.valid(b)
	peer := func(b *testing.B, mode string) string {
		return startBenchPeer(b, "rago", "RAGO_ACTOR_BENCH_AUTH="+mode, "RAGO_ACTOR_BENCH_CA="+string(ca.pem),
			"RAGO_ACTOR_BENCH_CERT="+string(cert.certPEM), "RAGO_ACTOR_BENCH_KEY="+string(cert.keyPEM))
	}
	node := func(b *testing.B, mode string) *Node {
		cfg := benchAuthConfig(mode, ca.pem, cert)
		cfg.Address, cfg.LinkQueueBytes = "127.0.0.1:0", 1<<30
		n, err := StartNode(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(n.Stop)
		return n
	}
	for _, mode := range benchAuthModes {
		b.Run("send/"+mode, func(b *testing.B) {
			ref := Ref{Name: "sink", Node: peer(b, mode)}
			n := node(b, mode)
			ragoCount(b, n, ref, 0)
			var msg Message = payload64
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				_ = n.Send(ref, msg)
			}
			ragoCount(b, n, ref, b.N)
			reportRate(b, start)
			if d := n.Stats().DroppedQueueFull; d > 0 {
				b.Fatalf("%d messages dropped", d)
			}
		})
	}
	for _, mode := range benchAuthModes {
		b.Run("call/"+mode, func(b *testing.B) {
			ref := Ref{Name: "sink", Node: peer(b, mode)}
			n := node(b, mode)
			ragoCount(b, n, ref, 0)
			var msg Message = payload64
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if _, err := n.Call(ref, msg, time.Minute); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, start)
		})
	}
	for _, mode := range benchAuthModes {
		b.Run("connect/"+mode, func(b *testing.B) {
			addr := peer(b, mode)
			n := node(b, mode)
			b.ResetTimer()
			for range b.N {
				raw, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := n.openConn(raw, addr); err != nil {
					b.Fatal(err)
				}
				raw.Close()
			}
		})
	}
}
