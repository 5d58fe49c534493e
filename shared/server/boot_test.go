package server

import (
	"bytes"
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

type bootConfig struct {
	Settings
	Widgets int    `conf:"default:3,help:widgets"`
	Secret  string `conf:"mask"`
}

func TestBoot(t *testing.T) {
	svc := Service{Name: "demo", Prefix: "DEMO", Addr: "127.0.0.1:8089", MetricsAddr: "127.0.0.1:9089", MaxBodyBytes: 1 << 20,
		SharedEnv: map[string]string{"LOOKALIKE_DEMO_SECRET": "DEMO_SECRET"}}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c bootConfig, b Booted, out string)
	}{
		{"service defaults", nil, nil, func(t *testing.T, c bootConfig, b Booted, out string) {
			if c.Addr != svc.Addr || c.MetricsAddr != svc.MetricsAddr || c.MaxBodyBytes != svc.MaxBodyBytes ||
				c.DrainDelay != DefaultDrainDelay || c.ShutdownTimeout != DefaultShutdownTimeout || c.Widgets != 3 {
				t.Fatalf("config %+v", c)
			}
			if b.Help || b.Log == nil || b.Tel == nil || b.Info.Service != "demo" {
				t.Fatalf("booted %+v", b)
			}
		}},
		{"environment and flags", []string{"--addr=:1234", "--log-level=debug"}, map[string]string{"DEMO_METRICS_ADDR": "", "DEMO_SHUTDOWN_TIMEOUT": "7s", "DEMO_SECRET": "hunter2"},
			func(t *testing.T, c bootConfig, _ Booted, out string) {
				if c.Addr != ":1234" || c.ShutdownTimeout != 7*time.Second || c.LogLevel != "debug" || c.Secret != "hunter2" {
					t.Fatalf("config %+v", c)
				}
				if strings.Contains(out, "hunter2") || !strings.Contains(out, `"effective"`) {
					t.Fatalf("the effective config is logged, secrets masked: %s", out)
				}
			}},
		{"project-wide variable", nil, map[string]string{"LOOKALIKE_DEMO_SECRET": "s1"}, func(t *testing.T, c bootConfig, _ Booted, _ string) {
			if c.Secret != "s1" {
				t.Fatalf("secret %q", c.Secret)
			}
		}},
		{"the service's own name wins", nil, map[string]string{"LOOKALIKE_DEMO_SECRET": "s1", "DEMO_SECRET": "s2"}, func(t *testing.T, c bootConfig, _ Booted, _ string) {
			if c.Secret != "s2" {
				t.Fatalf("secret %q", c.Secret)
			}
		}},
		{"help", []string{"--help"}, nil, func(t *testing.T, _ bootConfig, b Booted, out string) {
			if !b.Help || !strings.Contains(out, "DEMO_DRAIN_DELAY") || !strings.Contains(out, "--addr 127.0.0.1:8089") ||
				!strings.Contains(out, "LOOKALIKE_DEMO_SECRET") {
				t.Fatalf("help %v: %s", b.Help, out)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := os.Args
			t.Cleanup(func() { os.Args = old })
			os.Args = append([]string{"demo"}, tc.args...)
			t.Setenv("DEMO_SECRET", "")
			os.Unsetenv("DEMO_SECRET")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var c bootConfig
			var out bytes.Buffer
			b, err := boot(context.Background(), svc, &c, &c.Settings, &out)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c, b, out.String())
		})
	}
}

func TestSettingsDefaults(t *testing.T) {
	f, _ := reflect.TypeOf(Settings{}).FieldByName("DrainDelay")
	g, _ := reflect.TypeOf(Settings{}).FieldByName("ShutdownTimeout")
	for _, tc := range []struct {
		tag  string
		want time.Duration
	}{{f.Tag.Get("conf"), DefaultDrainDelay}, {g.Tag.Get("conf"), DefaultShutdownTimeout}} {
		if !strings.Contains(tc.tag, "default:"+tc.want.String()+",") {
			t.Errorf("tag %q does not default to %s", tc.tag, tc.want)
		}
	}
}
