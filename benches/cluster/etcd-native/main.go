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
//
// Operations, as `rdb bench`'s: put, get, txn-put (-txn-ops puts in one
// Txn, no compares, as etcd's `benchmark txn-put`), lease-keepalive (each
// client grants a lease, then KeepAliveOnce in a loop, as etcd's
// `benchmark lease-keepalive`), watch (-watchers watches on the "bench/"
// prefix, dealt over the connections, each connection's watches sharing
// its gRPC watch stream as clientv3 does, while the clients put at -rate
// values stamped with their send time; reports events received and the
// time from a put's sending to each watcher's receiving it). The
// maintenance operations snapshot and add-learner are admin.go's.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/etcdserver/api/v3rpc/rpctypes"
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
	op := flag.String("op", "put", "put, get, txn-put, lease-keepalive or watch; snapshot or add-learner (admin.go)")
	snapshotOut := flag.String("out", "", "snapshot: the file to save the member's database to")
	peerURL := flag.String("peer-url", "", "add-learner: the new member's peer URL")
	txnOps := flag.Int("txn-ops", 2, "puts in each txn of txn-put")
	leaseTTL := flag.Int64("lease-ttl", 60, "seconds: the TTL of lease-keepalive's leases")
	watchers := flag.Int("watchers", 1000, "watches of a watch run")
	rate := flag.Float64("rate", 0, "requests per second in all (0: unpaced; watch: 100)")
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
		*keys = "random"
		if *op == "get" {
			*keys = "existing"
		}
	}
	if *op == "watch" && *rate == 0 {
		*rate = 100
	}
	known := map[string]bool{"put": true, "get": true, "txn-put": true, "lease-keepalive": true, "watch": true}
	if !known[*op] && !isAdmin(*op) || *op == "watch" && *valueBytes < 20 || *keys != "random" && *keys != "sequential" && *keys != "existing" || *clients < 1 || *conns < 1 {
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
	if isAdmin(*op) {
		if err := runAdmin(cs[0], *op, *snapshotOut, *peerURL); err != nil {
			fmt.Fprintln(os.Stderr, "etcd-native:", err)
			os.Exit(1)
		}
		return
	}
	var w *watchSet
	if *op == "watch" {
		w = startWatchers(cs, *watchers)
	}
	var remaining int64 = *requests
	deadline := time.Now().Add(*duration)
	next := *firstKey
	var errors, paced int64
	latencies := make([][]time.Duration, *clients)
	var wg sync.WaitGroup
	start := time.Now()
	newKey := func(r *rng) string {
		switch *keys {
		case "sequential":
			return fmt.Sprintf("bench/%016d", atomic.AddUint64(&next, 1)-1)
		case "existing":
			return "bench/" + randomKey(*seed, r.next()%*keySpace)
		}
		return "bench/" + randomKey(*seed, atomic.AddUint64(&next, 1)-1)
	}
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			kv := cs[c%len(cs)]
			r := rng{s: mix64(*seed ^ mix64(uint64(c)+1))}
			var lease clientv3.LeaseID
			for {
				if *requests > 0 {
					if atomic.AddInt64(&remaining, -1) < 0 {
						return
					}
				} else if time.Now().After(deadline) {
					return
				}
				if *rate > 0 {
					n := atomic.AddInt64(&paced, 1) - 1
					time.Sleep(time.Until(start.Add(time.Duration(float64(n) / *rate * 1e9))))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				t := time.Now()
				var err error
				switch *op {
				case "put":
					_, err = kv.Put(ctx, newKey(&r), value)
				case "get":
					key := "bench/" + randomKey(*seed, r.next()%*keySpace)
					if *serializable {
						_, err = kv.Get(ctx, key, clientv3.WithSerializable())
					} else {
						_, err = kv.Get(ctx, key)
					}
				case "txn-put":
					ops := make([]clientv3.Op, *txnOps)
					for i := range ops {
						ops[i] = clientv3.OpPut(newKey(&r), value)
					}
					_, err = kv.Txn(ctx).Then(ops...).Commit()
				case "lease-keepalive":
					if lease == 0 {
						granted, gerr := kv.Grant(ctx, *leaseTTL)
						if gerr != nil {
							cancel()
							atomic.AddInt64(&errors, 1)
							continue
						}
						lease = granted.ID
						t = time.Now()
					}
					_, err = kv.KeepAliveOnce(ctx, lease)
					if err == rpctypes.ErrLeaseNotFound {
						lease = 0
					}
				case "watch":
					stamped := fmt.Sprintf("%020d", time.Now().UnixNano()/1000) + value[20:]
					_, err = kv.Put(ctx, newKey(&r), stamped)
				}
				cancel()
				if err != nil {
					atomic.AddInt64(&errors, 1)
					continue
				}
				latencies[c] = append(latencies[c], time.Since(t))
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	all, q := quantiles(latencies)
	out := map[string]interface{}{
		"title":          fmt.Sprintf("etcd-native %s: %d clients over %d connections, %d-byte values, %s keys", *op, *clients, *conns, *valueBytes, *keys),
		"requests":       len(all),
		"seconds":        elapsed.Seconds(),
		"ops_per_second": float64(len(all)) / elapsed.Seconds(),
		"latency_ms":     map[string]float64{"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": q(1)},
		"errors":         errors,
	}
	if w != nil {
		out["watch"] = w.finish(int64(len(all)), elapsed)
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

// watchSet: the watchers of a watch run.
type watchSet struct {
	count    int
	events   int64
	cancel   context.CancelFunc
	delivery [][]time.Duration
	done     sync.WaitGroup
}

// startWatchers opens n watches on the "bench/" prefix over the clients
// (one gRPC watch stream each, shared by its watches, as clientv3 does)
// and returns once every one is created.
func startWatchers(cs []*clientv3.Client, n int) *watchSet {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watchSet{count: n, cancel: cancel, delivery: make([][]time.Duration, n)}
	var created sync.WaitGroup
	for i := 0; i < n; i++ {
		created.Add(1)
		w.done.Add(1)
		ch := cs[i%len(cs)].Watch(ctx, "bench/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		go func(i int) {
			defer w.done.Done()
			first := true
			for resp := range ch {
				if first {
					created.Done()
					first = false
				}
				now := time.Now().UnixNano() / 1000
				for _, ev := range resp.Events {
					if ev.Type != clientv3.EventTypePut {
						continue
					}
					atomic.AddInt64(&w.events, 1)
					if len(ev.Kv.Value) >= 20 {
						if sent, err := strconv.ParseInt(string(ev.Kv.Value[:20]), 10, 64); err == nil {
							w.delivery[i] = append(w.delivery[i], time.Duration(now-sent)*time.Microsecond)
						}
					}
				}
			}
			if first {
				created.Done()
			}
		}(i)
	}
	created.Wait()
	return w
}

// finish waits up to 5 s for puts acknowledged puts to reach every
// watcher, stops them, and reports what they received.
func (w *watchSet) finish(puts int64, elapsed time.Duration) map[string]interface{} {
	expected := puts * int64(w.count)
	deadline := time.Now().Add(5 * time.Second)
	for atomic.LoadInt64(&w.events) < expected && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	w.cancel()
	w.done.Wait()
	_, q := quantiles(w.delivery)
	events := atomic.LoadInt64(&w.events)
	return map[string]interface{}{
		"watchers":          w.count,
		"events":            events,
		"expected_events":   expected,
		"events_per_second": float64(events) / elapsed.Seconds(),
		"delivery_ms":       map[string]float64{"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": q(1)},
	}
}

// quantiles merges per-goroutine durations: all of them, sorted, and the
// quantile function over them (in milliseconds; 0 when there are none).
func quantiles(parts [][]time.Duration) ([]time.Duration, func(float64) float64) {
	var all []time.Duration
	for _, p := range parts {
		all = append(all, p...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all, func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(p * float64(len(all)))
		if i >= len(all) {
			i = len(all) - 1
		}
		return float64(all[i].Microseconds()) / 1000
	}
}
