// Command bench-report gathers the BENCH lines of every stage benchmark's
// log into one Markdown and one JSON report.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/lookalike-dev/lookalike/shared/benchreport"
)

func main() {
	logs := flag.String("logs", "bench-out", "folder of stage logs (*.log)")
	md := flag.String("md", "bench-report.md", "Markdown report")
	js := flag.String("json", "bench-report.json", "JSON report")
	flag.Parse()
	if err := run(*logs, *md, *js); err != nil {
		fmt.Fprintln(os.Stderr, "bench-report:", err)
		os.Exit(1)
	}
}

func run(logDir, mdPath, jsonPath string) error {
	files, err := filepath.Glob(filepath.Join(logDir, "*.log"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	var stages []benchreport.Stage
	var missing []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return err
		}
		got, err := benchreport.Scan(fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if len(got) == 0 {
			missing = append(missing, filepath.Base(f))
		}
		stages = append(stages, got...)
	}
	host, _ := os.Hostname()
	text := fmt.Sprintf("# Lookalike benchmark report\n\n%s, %s. Each figure is against a reference measured in the same run on the same machine.\n\n%s",
		time.Now().UTC().Format(time.RFC3339), host, benchreport.Markdown(stages))
	if len(missing) > 0 {
		text += fmt.Sprintf("\nStages that printed no result (see their logs in %s): %v\n", logDir, missing)
	}
	if err := os.WriteFile(mdPath, []byte(text), 0o644); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(map[string]any{"generated": time.Now().UTC(), "host": host, "stages": stages}, "", "  ")
	if err := os.WriteFile(jsonPath, b, 0o644); err != nil {
		return err
	}
	fmt.Print(text)
	if len(missing) > 0 {
		return fmt.Errorf("%d stage(s) gave no result", len(missing))
	}
	return nil
}
