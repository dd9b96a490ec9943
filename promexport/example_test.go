package promexport_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rago-raft/rago/promexport"
	"github.com/rago-raft/rago/raftserver"
)

// A node registers the exporter on a registry of its own, beside Go's
// runtime and process collectors, and serves it on /metrics. Here the node
// hosts a cluster of one member, takes three commands, and the example
// reads /metrics as Prometheus would.
func Example() {
	dir, err := os.MkdirTemp("", "rago-promexport")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	machines := map[string]raftserver.MachineFactory{
		"kv": func([]byte) (raftserver.Machine, error) { return &kv{m: map[string]string{}}, nil },
	}
	sys, err := raftserver.StartSystem(raftserver.SystemConfig{DataDir: dir, Address: "127.0.0.1:0", Machines: machines})
	if err != nil {
		log.Fatal(err)
	}
	defer sys.Stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		promexport.New(sys, promexport.Options{}), // Options{Aggregate: true} on a node with many clusters
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux) // http.ListenAndServe(":9100", mux) in a real program
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	member := raftserver.ServerID{Name: "kv1", Node: sys.Name()}
	if _, _, err := sys.StartCluster(ctx, "orders", raftserver.MachineSpec{Kind: "kv"}, []raftserver.ServerID{member}); err != nil {
		log.Fatal(err)
	}
	for _, cmd := range []string{"a=1", "b=2", "c=3"} {
		if _, _, err := sys.ProcessCommand(ctx, member, []byte(cmd)); err != nil {
			log.Fatal(err)
		}
	}

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	server := `{cluster="orders",server="` + member.String() + `"}`
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := strings.Replace(sc.Text(), server, `{cluster="orders",server="kv1@..."}`, 1)
		switch {
		case strings.HasPrefix(line, "# TYPE rago_commit_latency_seconds"),
			strings.HasPrefix(line, "rago_commands_committed_total"),
			strings.HasPrefix(line, "rago_commit_latency_seconds_count"),
			strings.HasPrefix(line, "rago_server_leader"):
			fmt.Println(line)
		}
	}
	// Output:
	// rago_commands_committed_total{cluster="orders",server="kv1@..."} 3
	// # TYPE rago_commit_latency_seconds histogram
	// rago_commit_latency_seconds_count{cluster="orders",server="kv1@..."} 3
	// rago_server_leader{cluster="orders",server="kv1@..."} 1
}
