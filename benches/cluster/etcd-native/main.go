// etcd-native: drives etcd 3.4 through its native gRPC client (clientv3),
// as etcd's users and etcd's own `benchmark` tool do, with the same keys,
// values and concurrency as `rdb bench`, and prints one JSON line shaped
// like `rdb bench --json`.
//
// Keys: "bench/" + the 16-character names of `rdb bench` (src/cli/bench/
// workload.rs): random = hex of mix64(seed*0x9e3779b97f4a7c15 + i), never
// reused; existing = random among the first -key-space of those;
// sequential = i zero-padded (a friendly pattern).
//
// Built with Debian's golang-go and golang-etcd-server-dev, no network:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o etcd-native .
//	./etcd-native -endpoints 127.0.0.1:2379 -op put -clients 64 -conns 8 -duration 30s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/pkg/transport"
)

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func randomKey(seed, i uint64) string {
	return fmt.Sprintf("%016x", mix64(seed*0x9e3779b97f4a7c15+i))
}

type rng struct{ s uint64 }

func (r *rng) next() uint64 { r.s += 0x9e3779b97f4a7c15; return mix64(r.s) }

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated host:port")
	op := flag.String("op", "put", "put or get")
	keys := flag.String("keys", "", "random, sequential or existing (default: random for put, existing for get)")
	clients := flag.Int("clients", 64, "concurrent requests")
	conns := flag.Int("conns", 8, "gRPC connections the clients share")
	duration := flag.Duration("duration", 30*time.Second, "how long (ignored with -requests)")
	requests := flag.Int64("requests", 0, "stop after this many requests")
	valueBytes := flag.Int("value-bytes", 100, "bytes per value")
	keySpace := flag.Uint64("key-space", 100000, "keys `existing` chooses among")
	firstKey := flag.Uint64("first-key", 0, "index of the first new key")
	seed := flag.Uint64("seed", 1, "seed of key names")
	serializable := flag.Bool("serializable", false, "serializable gets (default linearizable)")
	cacert := flag.String("cacert", "", "CA certificate (PEM) for https endpoints")
	cert := flag.String("cert", "", "client certificate (PEM)")
	key := flag.String("key", "", "client certificate's key (PEM)")
	flag.Parse()
	if *keys == "" {
		*keys = map[string]string{"put": "random", "get": "existing"}[*op]
	}
	if *op != "put" && *op != "get" || *keys != "random" && *keys != "sequential" && *keys != "existing" || *clients < 1 || *conns < 1 {
		fmt.Fprintln(os.Stderr, "etcd-native: bad flags")
		os.Exit(2)
	}
	value := strings.Repeat("v", *valueBytes)
	config := clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 10 * time.Second}
	if *cacert != "" {
		tlsConfig, err := transport.TLSInfo{CertFile: *cert, KeyFile: *key, TrustedCAFile: *cacert}.ClientConfig()
		if err != nil {
			fmt.Fprintln(os.Stderr, "etcd-native:", err)
			os.Exit(2)
		}
		config.TLS = tlsConfig
	}
	cs := make([]*clientv3.Client, *conns)
	for i := range cs {
		c, err := clientv3.New(config)
		if err != nil {
			fmt.Fprintln(os.Stderr, "etcd-native:", err)
			os.Exit(3)
		}
		cs[i] = c
	}
	var remaining int64 = *requests
	deadline := time.Now().Add(*duration)
	next := *firstKey
	var errors int64
	latencies := make([][]time.Duration, *clients)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			kv := cs[w%len(cs)]
			r := rng{s: mix64(*seed ^ mix64(uint64(w)+1))}
			for {
				if *requests > 0 {
					if atomic.AddInt64(&remaining, -1) < 0 {
						return
					}
				} else if time.Now().After(deadline) {
					return
				}
				var key string
				switch *keys {
				case "random":
					key = randomKey(*seed, atomic.AddUint64(&next, 1)-1)
				case "sequential":
					key = fmt.Sprintf("%016d", atomic.AddUint64(&next, 1)-1)
				default:
					key = randomKey(*seed, r.next()%*keySpace)
				}
				key = "bench/" + key
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				t := time.Now()
				var err error
				if *op == "put" {
					_, err = kv.Put(ctx, key, value)
				} else if *serializable {
					_, err = kv.Get(ctx, key, clientv3.WithSerializable())
				} else {
					_, err = kv.Get(ctx, key)
				}
				cancel()
				if err != nil {
					atomic.AddInt64(&errors, 1)
					continue
				}
				latencies[w] = append(latencies[w], time.Since(t))
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	q := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(p * float64(len(all)))
		if i >= len(all) {
			i = len(all) - 1
		}
		return float64(all[i].Microseconds()) / 1000
	}
	out := map[string]interface{}{
		"title":          fmt.Sprintf("etcd-native %s: %d clients over %d connections, %d-byte values, %s keys", *op, *clients, *conns, *valueBytes, *keys),
		"requests":       len(all),
		"seconds":        elapsed.Seconds(),
		"ops_per_second": float64(len(all)) / elapsed.Seconds(),
		"latency_ms":     map[string]float64{"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": q(1)},
		"errors":         errors,
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
