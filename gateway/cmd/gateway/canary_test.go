package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/gateway/internal/canary"
	"github.com/lookalike-dev/lookalike/gateway/internal/gatewaytest"
	"github.com/lookalike-dev/lookalike/gateway/internal/service"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1/embedv1test"
)

const canaryModel = "fake-v2"

func productBody(t *testing.T, sku string, seed int) ([]byte, string) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 24, 16))
	for y := range 16 {
		for x := range 24 {
			img.Set(x, y, color.RGBA{uint8(x*9 + seed*50), uint8(y*13 + seed*20), uint8(seed * 70), 255})
		}
	}
	var pb, b bytes.Buffer
	if err := png.Encode(&pb, img); err != nil {
		t.Fatal(err)
	}
	w := multipart.NewWriter(&b)
	_ = w.WriteField("sku", sku)
	_ = w.WriteField("metadata", `{"title":"`+sku+`"}`)
	fw, _ := w.CreateFormFile("image", "i.png")
	_, _ = fw.Write(pb.Bytes())
	_ = w.Close()
	return b.Bytes(), w.FormDataContentType()
}

// TestCanaryCommand drives a whole rollout through the canary subcommand
// against a real gateway over the contracts' doubles.
func TestCanaryCommand(t *testing.T) {
	env := gatewaytest.Start(t, gatewaytest.Options{
		ExtraModels: []embedv1.ModelSpec{embedv1test.Model(canaryModel, 64, gatewaytest.Spec())},
		Config: func(c *service.Config) {
			c.Canary.Model = canaryModel
			c.Canary.Share = 0.1
			c.Canary.StateTTL = time.Nanosecond // the commands change the aliases between calls
		},
	})
	for i := 1; i <= 3; i++ {
		body, ct := productBody(t, fmt.Sprintf("SKU-%d", i), i)
		if resp := env.Do(t, http.MethodPost, "/v1/products", ct, body, gatewaytest.AdminKey); resp.StatusCode != http.StatusCreated {
			t.Fatalf("index: %d", resp.StatusCode)
		}
	}
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runCanary(context.Background(), args, &out, &errb, func(k string) string {
			switch k {
			case "LOOKALIKE_GATEWAY_URL":
				return env.URL
			case "LOOKALIKE_ADMIN_KEY":
				return gatewaytest.AdminKey
			}
			return ""
		})
		return code, out.String(), errb.String()
	}
	steps := []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{"report"}, 0, "phase none"},
		{[]string{"serve"}, 1, canary.CodeNoCanary},
		{[]string{"start"}, 0, "create_collection"}, // CANARY_MODEL
		{[]string{"start", "--model", canaryModel}, 0, "phase backfill"},
		{[]string{"promote"}, 1, canary.CodeCanaryNotLive},
		{[]string{"serve"}, 0, "phase live"},
		{[]string{"promote"}, 1, canary.CodeCanaryIncomplete}, // the canary's space is empty
		{[]string{"report", "--json"}, 0, `"backfill_progress": 0,`},
		{[]string{"promote", "--force"}, 0, "stable " + canaryModel},
		{[]string{"promote", "--model", canaryModel}, 0, "phase none"},
		{[]string{"rollback", "--drop"}, 0, "phase none"},
		{[]string{"bogus"}, 2, "unknown canary command"},
		{nil, 2, "usage"},
	}
	for _, s := range steps {
		code, out, errs := cli(s.args...)
		if code != s.code || !strings.Contains(strings.Join(strings.Fields(out+errs), " "), s.contains) {
			t.Fatalf("canary %v: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\nwant %q", s.args, code, s.code, out, errs, s.contains)
		}
	}
}
