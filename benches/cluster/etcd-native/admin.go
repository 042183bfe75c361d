// The maintenance operations benches/cluster/snapshots.sh times under
// load, done as etcdctl does them, through the same clientv3 calls:
//
//	-op snapshot -out FILE       etcdctl snapshot save FILE: the member at
//	                             -endpoints streams its database; written to
//	                             FILE.part, synced, renamed to FILE
//	-op add-learner -peer-url U  etcdctl member add --learner: the new
//	                             member's id, for it to be started with
//	                             --initial-cluster-state existing
//
// Each prints one JSON line: what it made and how long it took, in
// seconds.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"go.etcd.io/etcd/clientv3"
)

// adminTimeout bounds one maintenance call, the snapshot's whole stream
// included.
const adminTimeout = 10 * time.Minute

// isAdmin says whether op is one of this file's.
func isAdmin(op string) bool { return op == "snapshot" || op == "add-learner" }

// runAdmin runs a maintenance op on c and prints its JSON line.
func runAdmin(c *clientv3.Client, op, out, peerURL string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	start := time.Now()
	result := map[string]interface{}{"op": op}
	switch op {
	case "snapshot":
		if out == "" {
			return fmt.Errorf("snapshot needs -out FILE")
		}
		n, err := saveSnapshot(ctx, c, out)
		if err != nil {
			return err
		}
		result["bytes"] = n
	case "add-learner":
		if peerURL == "" {
			return fmt.Errorf("add-learner needs -peer-url URL")
		}
		resp, err := c.MemberAddAsLearner(ctx, []string{peerURL})
		if err != nil {
			return err
		}
		result["id"] = fmt.Sprintf("%x", resp.Member.ID)
	}
	result["seconds"] = time.Since(start).Seconds()
	b, _ := json.Marshal(result)
	fmt.Println(string(b))
	return nil
}

// saveSnapshot streams the member's database into path (through
// path.part, synced before the rename, as etcdctl does); returns its bytes.
func saveSnapshot(ctx context.Context, c *clientv3.Client, path string) (int64, error) {
	stream, err := c.Snapshot(ctx)
	if err != nil {
		return 0, err
	}
	defer stream.Close()
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, stream)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(part, path)
	}
	if err != nil {
		os.Remove(part)
		return 0, err
	}
	return n, nil
}
