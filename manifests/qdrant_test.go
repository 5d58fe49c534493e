package manifests_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/lookalike-dev/lookalike/manifests/internal/render"
)

// TestQdrantReplicationFitsThePeers: what search asks Qdrant for at collection create fits the
// StatefulSet of each overlay, and prod keeps every shard on two of its three peers with writes
// confirmed by both.
func TestQdrantReplicationFitsThePeers(t *testing.T) {
	tree := loadTree(t)
	tests := []struct {
		overlay       string
		peers         int32
		shards, rf, w int
	}{
		{"dev", 1, 0, 0, 0},
		{"prod", 3, 3, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.overlay, func(t *testing.T) {
			objs, err := tree.Render(render.Variant{Overlay: tt.overlay})
			if err != nil {
				t.Fatal(err)
			}
			var peers int32 = -1
			var env map[string]string
			for _, o := range objs {
				switch x := o.Typed.(type) {
				case *appsv1.StatefulSet:
					if x.Name == "qdrant" && x.Spec.Replicas != nil {
						peers = *x.Spec.Replicas
					}
				case *corev1.ConfigMap:
					if strings.HasPrefix(x.Name, "search-config-") {
						env = x.Data
					}
				}
			}
			if env == nil || env["SEARCH_BACKEND"] != "qdrant" {
				t.Fatalf("search-config %v: want the qdrant backend", env)
			}
			num := func(k string) int {
				if env[k] == "" {
					return 0
				}
				n, err := strconv.Atoi(env[k])
				if err != nil {
					t.Fatalf("%s=%q: %v", k, env[k], err)
				}
				return n
			}
			shards, rf, w := num("SEARCH_QDRANT_SHARD_NUMBER"), num("SEARCH_QDRANT_REPLICATION_FACTOR"), num("SEARCH_QDRANT_WRITE_CONSISTENCY_FACTOR")
			if peers != tt.peers || shards != tt.shards || rf != tt.rf || w != tt.w {
				t.Fatalf("peers %d shards %d replication %d write consistency %d, want %d %d %d %d",
					peers, shards, rf, w, tt.peers, tt.shards, tt.rf, tt.w)
			}
			if int32(max(rf, 1)) > peers || max(w, 1) > max(rf, 1) {
				t.Fatalf("replication %d on %d peers with write consistency %d cannot be placed", rf, peers, w)
			}
		})
	}
}

// TestSnapshotS3Component: the component gives the snapshot Job the bucket settings, its credentials,
// a scratch volume where SNAPSHOT_TMP points, and egress to the bucket; without it the Job has none.
func TestSnapshotS3Component(t *testing.T) {
	tree := loadTree(t)
	for _, v := range []render.Variant{{Overlay: "prod"}, {Overlay: "prod", Components: []string{"qdrant-snapshot-s3"}}} {
		t.Run(v.Name(), func(t *testing.T) {
			objs, err := tree.Render(v)
			if err != nil {
				t.Fatal(err)
			}
			withS3 := len(v.Components) > 0
			var cj *batchv1.CronJob
			var egress443 bool
			cms := map[string]map[string]string{}
			for _, o := range objs {
				switch x := o.Typed.(type) {
				case *batchv1.CronJob:
					if x.Name == "qdrant-snapshot" {
						cj = x
					}
				case *networkingv1.NetworkPolicy:
					if x.Name == "qdrant-snapshot" {
						for _, e := range x.Spec.Egress {
							for _, p := range e.Ports {
								egress443 = egress443 || (p.Port != nil && p.Port.IntVal == 443)
							}
						}
					}
				case *corev1.ConfigMap:
					cms[x.Name] = x.Data
				}
			}
			if cj == nil {
				t.Fatal("no qdrant-snapshot CronJob")
			}
			spec := cj.Spec.JobTemplate.Spec.Template.Spec
			ctr := spec.Containers[0]
			env := map[string]string{}
			for _, e := range ctr.Env {
				env[e.Name] = e.Value
			}
			if env["QDRANT_SNAPSHOT_KEEP"] == "" || env["QDRANT_REPLICAS"] != "3" {
				t.Fatalf("snapshot env %v: want QDRANT_SNAPSHOT_KEEP and 3 peers", env)
			}
			var secret bool
			for _, ef := range ctr.EnvFrom {
				if ef.ConfigMapRef != nil {
					for k, val := range cms[ef.ConfigMapRef.Name] {
						env[k] = val
					}
				}
				secret = secret || (ef.SecretRef != nil && ef.SecretRef.Name == "qdrant-snapshot-s3")
			}
			if got := env["S3_BUCKET"] != ""; got != withS3 || secret != withS3 || egress443 != withS3 {
				t.Fatalf("bucket set %v, credentials %v, egress 443 %v; want all %v", got, secret, egress443, withS3)
			}
			if !withS3 {
				return
			}
			mounted := false
			for _, m := range ctr.VolumeMounts {
				mounted = mounted || (m.MountPath == env["SNAPSHOT_TMP"] && !m.ReadOnly)
			}
			if !mounted || env["S3_ENDPOINT"] == "" {
				t.Fatalf("SNAPSHOT_TMP=%q mounted %v, S3_ENDPOINT %q", env["SNAPSHOT_TMP"], mounted, env["S3_ENDPOINT"])
			}
		})
	}
}

// fakeQdrantREST serves the snapshot endpoints of one peer the way Qdrant's REST API does.
type fakeQdrantREST struct {
	mu        sync.Mutex
	peer      string
	snaps     map[string][]string // collection -> snapshot names
	next      int
	failWrite bool
}

func (f *fakeQdrantREST) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("api-key") != "k" {
		http.Error(w, `{"status":{"error":"Must provide an API key"}}`, http.StatusUnauthorized)
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	ok := func(result any) {
		json.NewEncoder(w).Encode(map[string]any{"result": result, "status": "ok", "time": 0.001})
	}
	switch {
	case r.Method == http.MethodGet && len(parts) == 1 && parts[0] == "collections":
		var cs []map[string]string
		for _, c := range slices.Sorted(mapsKeys(f.snaps)) {
			cs = append(cs, map[string]string{"name": c})
		}
		ok(map[string]any{"collections": cs})
	case len(parts) >= 3 && parts[0] == "collections" && parts[2] == "snapshots":
		c := parts[1]
		if _, found := f.snaps[c]; !found {
			http.Error(w, `{"status":{"error":"Not found"}}`, http.StatusNotFound)
			return
		}
		switch {
		case r.Method == http.MethodPost && len(parts) == 3:
			f.next++
			name := fmt.Sprintf("%s-%s-2026-12-05-03-17-%02d.snapshot", c, f.peer, f.next)
			f.snaps[c] = append(f.snaps[c], name)
			ok(map[string]any{"name": name, "creation_time": "2026-12-05T03:17:00", "size": len(name), "checksum": "00"})
		case r.Method == http.MethodGet && len(parts) == 3:
			var out []map[string]any
			for _, n := range f.snaps[c] {
				out = append(out, map[string]any{"name": n, "creation_time": "x", "size": len(n), "checksum": "00"})
			}
			ok(out)
		case r.Method == http.MethodGet && len(parts) == 4:
			io.WriteString(w, "SNAPSHOT "+parts[3])
		case r.Method == http.MethodDelete && len(parts) == 4:
			if f.failWrite {
				http.Error(w, `{"status":{"error":"disk full"}}`, http.StatusInternalServerError)
				return
			}
			i := slices.Index(f.snaps[c], parts[3])
			if i < 0 {
				http.Error(w, `{"status":{"error":"Not found"}}`, http.StatusNotFound)
				return
			}
			f.snaps[c] = slices.Delete(f.snaps[c], i, i+1)
			ok(true)
		default:
			http.Error(w, "unexpected", http.StatusMethodNotAllowed)
		}
	default:
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
	}
}

func mapsKeys(m map[string][]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// fakeS3 records signed PUTs.
type fakeS3 struct {
	mu   sync.Mutex
	objs map[string]string
	fail bool
}

func (s *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	auth := r.Header.Get("Authorization")
	if r.Method != http.MethodPut || !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKID/") || !strings.Contains(auth, "/s3/aws4_request") ||
		r.ContentLength != int64(len(body)) || s.fail {
		http.Error(w, "<Error><Code>AccessDenied</Code></Error>", http.StatusForbidden)
		return
	}
	s.objs[r.URL.Path] = string(body)
}

// TestSnapshotScriptPrunesAndCopies runs the CronJob's script, as rendered into its ConfigMap, against
// two fake Qdrant peers and a fake bucket: each run snapshots every collection on every peer, copies
// the new snapshot to the bucket, and keeps the newest QDRANT_SNAPSHOT_KEEP per collection and peer;
// a failed copy fails the Job and prunes nothing.
func TestSnapshotScriptPrunesAndCopies(t *testing.T) {
	for _, tool := range []string{"sh", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to run the snapshot script (the CronJob's curl image has both): %v", tool, err)
		}
	}
	objs, err := loadTree(t).Render(render.Variant{Overlay: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	var script string
	for _, o := range objs {
		if cm, ok := o.Typed.(*corev1.ConfigMap); ok && strings.HasPrefix(cm.Name, "qdrant-snapshot-script-") {
			script = cm.Data["snapshot.sh"]
		}
	}
	if script == "" {
		t.Fatal("snapshot.sh not rendered into qdrant-snapshot-script")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "snapshot.sh")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	peers := []*fakeQdrantREST{
		{peer: "111", snaps: map[string][]string{"products__m1": nil, "products__m2": nil}},
		{peer: "222", snaps: map[string][]string{"products__m1": nil, "products__m2": nil}},
	}
	// Old snapshots from before retention existed: 5 on one collection of the first peer.
	for i := range 5 {
		peers[0].snaps["products__m1"] = append(peers[0].snaps["products__m1"], fmt.Sprintf("products__m1-111-2026-11-0%d-03-17-00.snapshot", i+1))
	}
	var urls []string
	for _, p := range peers {
		srv := httptest.NewServer(p)
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	bucket := &fakeS3{objs: map[string]string{}}
	s3 := httptest.NewServer(bucket)
	t.Cleanup(s3.Close)
	scratch := t.TempDir()
	run := func() (string, error) {
		cmd := exec.Command("sh", path)
		cmd.Env = append(os.Environ(), "QDRANT_PEERS="+strings.Join(urls, " "), "QDRANT_API_KEY=k", "QDRANT_SNAPSHOT_KEEP=3",
			"S3_ENDPOINT="+s3.URL, "S3_BUCKET=backups", "S3_PREFIX=qdrant", "S3_ACCESS_KEY_ID=AKID", "S3_SECRET_ACCESS_KEY=secret",
			"SNAPSHOT_TMP="+scratch, "no_proxy=*", "NO_PROXY=*")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for round := 1; round <= 4; round++ {
		out, err := run()
		if err != nil {
			t.Fatalf("round %d: %v\n%s", round, err, out)
		}
	}
	for _, p := range peers {
		for c, names := range p.snaps {
			if len(names) != 3 {
				t.Fatalf("peer %s %s keeps %d snapshots, want 3: %v", p.peer, c, len(names), names)
			}
			for _, n := range names {
				if !strings.Contains(n, "2026-12-05") {
					t.Fatalf("peer %s %s kept an old snapshot %s instead of a newer one: %v", p.peer, c, n, names)
				}
			}
		}
	}
	if len(bucket.objs) != 2*2*4 {
		t.Fatalf("bucket holds %d objects, want one per peer, collection and run (16): %v", len(bucket.objs), bucket.objs)
	}
	if got := bucket.objs["/backups/qdrant/qdrant-1/products__m2/products__m2-222-2026-12-05-03-17-08.snapshot"]; got != "SNAPSHOT products__m2-222-2026-12-05-03-17-08.snapshot" {
		t.Fatalf("copied object %q; objects %v", got, slices.Sorted(func(yield func(string) bool) {
			for k := range bucket.objs {
				if !yield(k) {
					return
				}
			}
		}))
	}
	if left, _ := os.ReadDir(scratch); len(left) != 0 {
		t.Fatalf("scratch files left behind: %v", left)
	}
	// The bucket refuses: the Job fails and every local snapshot stays.
	bucket.fail = true
	out, err := run()
	if err == nil || !strings.Contains(out, "copy to s3 FAILED") {
		t.Fatalf("a refused copy must fail the job: %v\n%s", err, out)
	}
	for _, p := range peers {
		for c, names := range p.snaps {
			if len(names) != 4 {
				t.Fatalf("after a failed copy peer %s %s holds %d snapshots, want 4 (nothing pruned)", p.peer, c, len(names))
			}
		}
	}
	// A refused delete fails the Job too.
	bucket.fail = false
	peers[1].failWrite = true
	if out, err := run(); err == nil || !strings.Contains(out, "pruning FAILED peer=qdrant-1") {
		t.Fatalf("a refused delete must fail the job: %v\n%s", err, out)
	}
}
