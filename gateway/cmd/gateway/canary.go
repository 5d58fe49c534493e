package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lookalike-dev/lookalike/gateway/internal/canary"
	"github.com/lookalike-dev/lookalike/shared/apierror"
)

// canaryClient calls a gateway's canary admin API.
type canaryClient struct {
	BaseURL string
	Key     string
	HTTP    canary.Doer
}

func (c *canaryClient) do(ctx context.Context, method, route string, in any) (canary.Report, error) {
	d := c.HTTP
	if d == nil {
		d = &http.Client{Timeout: 60 * time.Second}
	}
	var rep canary.Report
	err := callJSON(ctx, d, method, strings.TrimRight(c.BaseURL, "/")+route, c.Key, in, &rep)
	return rep, err
}

// Report returns the rollout report.
func (c *canaryClient) Report(ctx context.Context) (canary.Report, error) {
	return c.do(ctx, http.MethodGet, canary.RouteCanary, nil)
}

// Start starts rolling out model (empty: the gateway's CANARY_MODEL).
func (c *canaryClient) Start(ctx context.Context, model string) (canary.Report, error) {
	return c.do(ctx, http.MethodPost, canary.RouteCanary, canary.StartRequest{Model: model})
}

// Serve sends the canary its traffic share.
func (c *canaryClient) Serve(ctx context.Context) (canary.Report, error) {
	return c.do(ctx, http.MethodPost, canary.RouteServe, struct{}{})
}

// Promote makes the canary the stable model.
func (c *canaryClient) Promote(ctx context.Context, r canary.PromoteRequest) (canary.Report, error) {
	return c.do(ctx, http.MethodPost, canary.RoutePromote, r)
}

// Rollback stops the canary (drop: and deletes its space).
func (c *canaryClient) Rollback(ctx context.Context, r canary.RollbackRequest) (canary.Report, error) {
	return c.do(ctx, http.MethodPost, canary.RouteRollback, r)
}

// canaryUsage describes the canary command.
const canaryUsage = `usage: gateway canary <report|start|serve|promote|rollback> [flags]

  report                       print the rollout: phase, models, spaces and counts, backfill
                               progress, per-model latency/errors/scores, shadow overlap@10
  start [--model ID]           create the canary's space; dual writes begin (then run the backfill:
                               indexer run --catalog=... --model=ID --make-alias=false)
  serve                        backfill done: send the canary its share (CANARY_SHARE) of queries
  promote [--model ID] [--force]
                               switch the catalog alias to the canary's space atomically
  rollback [--drop]            stop canary traffic and dual writes (--drop: delete its space)

flags: --gateway URL (env LOOKALIKE_GATEWAY_URL, default http://127.0.0.1:8080),
       --key KEY (env LOOKALIKE_ADMIN_KEY), --json (print the raw report)
`

// runCanary runs the canary command with args (after "canary") and returns
// the exit status: 0 done, 1 refused or failed, 2 bad usage.
func runCanary(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, canaryUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd := args[0]
	fs := flag.NewFlagSet("canary "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	gatewayURL := getenv("LOOKALIKE_GATEWAY_URL")
	if gatewayURL == "" {
		gatewayURL = "http://127.0.0.1:8080"
	}
	base := fs.String("gateway", gatewayURL, "gateway base URL")
	key := fs.String("key", getenv("LOOKALIKE_ADMIN_KEY"), "admin key")
	asJSON := fs.Bool("json", false, "print the raw JSON report")
	model := fs.String("model", "", "model id (start, promote)")
	force := fs.Bool("force", false, "promote even if the canary is not live or holds fewer products")
	drop := fs.Bool("drop", false, "rollback: delete the canary's space too")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	c := &canaryClient{BaseURL: *base, Key: *key}
	var rep canary.Report
	var err error
	switch cmd {
	case "report":
		rep, err = c.Report(ctx)
	case "start":
		rep, err = c.Start(ctx, *model)
	case "serve":
		rep, err = c.Serve(ctx)
	case "promote":
		rep, err = c.Promote(ctx, canary.PromoteRequest{Model: *model, Force: *force})
	case "rollback":
		rep, err = c.Rollback(ctx, canary.RollbackRequest{Drop: *drop})
	default:
		fmt.Fprintf(stderr, "unknown canary command %q\n\n%s", cmd, canaryUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "canary %s: %v\n", cmd, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return 1
		}
		return 0
	}
	if err := printReport(stdout, rep); err != nil {
		fmt.Fprintf(stderr, "canary %s: %v\n", cmd, errors.Unwrap(err))
		return 1
	}
	return 0
}

// printReport writes a report for people.
func printReport(w io.Writer, rep canary.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "catalog\t%s\n", rep.Catalog)
	fmt.Fprintf(tw, "phase\t%s\n", rep.Phase)
	fmt.Fprintf(tw, "stable\t%s\t(%s)\n", dash(rep.Stable), dash(rep.StableCollection))
	fmt.Fprintf(tw, "canary\t%s\t(%s)\n", dash(rep.Canary), dash(rep.CanaryCollection))
	fmt.Fprintf(tw, "share\t%.1f%%\tshadow rate %.1f%%\n", 100*rep.Share, 100*rep.ShadowRate)
	if rep.Active() {
		fmt.Fprintf(tw, "backfill\t%.1f%%\n", 100*rep.BackfillProgress)
	}
	for _, op := range rep.Ops {
		fmt.Fprintf(tw, "changed\t%s\t%s%s\n", op.Kind, op.Alias, arrow(op))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "SPACE\tROLE\tMODEL\tDIM\tPRODUCTS")
	for _, s := range rep.Spaces {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", s.Collection, s.Role, s.Model, s.Dim, s.Count)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "MODEL\tARM\tQUERIES\tERRORS\tP50 ms\tP90 ms\tP99 ms\tTOP SCORE p10/p50/p90\tWRITES (failed)")
	for _, m := range rep.Models {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.3f/%.3f/%.3f\t%d (%d)\n", m.Model, m.Arm, m.Queries, m.Errors,
			m.LatencyP50, m.LatencyP90, m.LatencyP99, m.TopScoreP10, m.TopScoreP50, m.TopScoreP90, m.Writes, m.WriteErrors)
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "shadow\t%d runs, %d failed, %d dropped\toverlap@10 mean %.3f, p10 %.3f, p50 %.3f\n",
		rep.Shadow.Runs, rep.Shadow.Errors, rep.Shadow.Dropped, rep.Shadow.OverlapMean, rep.Shadow.OverlapP10, rep.Shadow.OverlapP50)
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func arrow(op canary.Op) string {
	if op.Collection == "" {
		return ""
	}
	if op.Alias == "" {
		return op.Collection
	}
	return " -> " + op.Collection
}

// callJSON sends in (JSON, when not nil) with an optional bearer key and
// decodes a 2xx answer into out (when not nil); a non-2xx answer becomes
// the *apierror.Error of its envelope.
func callJSON(ctx context.Context, d canary.Doer, method, u, key string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding %s %s: %w", method, u, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("building %s %s: %w", method, u, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := d.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apierror.FromResponse(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return fmt.Errorf("decoding %s %s: %w", method, u, err)
	}
	return nil
}
