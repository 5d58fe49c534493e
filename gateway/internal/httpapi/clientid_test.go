package httpapi_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/lookalike-dev/lookalike/gateway/internal/gatewaytest"
	"github.com/lookalike-dev/lookalike/gateway/internal/service"
	"github.com/lookalike-dev/lookalike/shared/adminkey"
)

// A rotated key list (old,new) lets both keys in and nothing else; the
// indexer's admin API reads the same setting through the same code.
func TestRotatedAdminKeyList(t *testing.T) {
	const oldKey, newKey = "old-admin-key-0123456789", "new-admin-key-0123456789"
	env := gatewaytest.Start(t, gatewaytest.Options{Config: func(c *service.Config) { c.AdminKeys = oldKey + "," + newKey }})
	for _, tc := range []struct {
		key  string
		want int
	}{
		{oldKey, 404}, {newKey, 404}, {gatewaytest.AdminKey, 401}, {oldKey + "," + newKey, 401}, {"new-admin-key", 401},
	} {
		resp := env.Do(t, "GET", "/v1/products/NOPE", "", nil, tc.key)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("key %q: %d, want %d", tc.key, resp.StatusCode, tc.want)
		}
	}
}

// Behind the ingress (its range in TrustedProxies) each shopper is the
// client X-Forwarded-For names: wrong admin keys are limited per client
// before the key check (429 even with the right key), and the ingress's
// other clients keep their own budget.
func TestFailedAdminKeysLimitedPerClient(t *testing.T) {
	env := gatewaytest.Start(t, gatewaytest.Options{Config: func(c *service.Config) {
		c.TrustedProxies = []string{"127.0.0.0/8"} // the test's requests come from loopback, as if from the ingress
		c.AdminAuthFailures, c.AdminAuthFailureBurst = 1, 5
	}})
	do := func(client, key string) (int, string) {
		req, _ := http.NewRequest("GET", env.URL+"/v1/products/NOPE", nil)
		req.Header.Set("X-Forwarded-For", client)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	const guesser, shopper = "198.51.100.66", "198.51.100.7"
	for i := range 5 {
		if code, b := do(guesser, "guess-0123456789-"+string(rune('a'+i))); code != 401 {
			t.Fatalf("guess %d: %d %s", i, code, b)
		}
	}
	if code, b := do(guesser, "guess-0123456789-z"); code != 429 || !bytes.Contains([]byte(b), []byte(adminkey.CodeTooManyFailures)) {
		t.Fatalf("sixth guess: %d %s", code, b)
	}
	if code, b := do(guesser, gatewaytest.AdminKey); code != 429 {
		t.Fatalf("the right key from the guesser: %d %s (the limit comes before the key check)", code, b)
	}
	if code, b := do(shopper, gatewaytest.AdminKey); code != 404 {
		t.Fatalf("another client behind the same ingress: %d %s", code, b)
	}
	// A guesser that makes up X-Forwarded-For entries in front is still itself.
	if code, b := do("203.0.113.1, "+guesser, gatewaytest.AdminKey); code != 429 {
		t.Fatalf("spoofed entry in front: %d %s", code, b)
	}
}
