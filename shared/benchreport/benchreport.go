// Package benchreport is the one line every stage benchmark prints so that
// `make bench` can gather a single report:
//
//	BENCH {"stage":"preprocess","rows":[{"name":...,"figure":...,"unit":...,"reference":...,"reference_figure":...,"ratio":...,"goal":...}]}
package benchreport

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Prefix starts every report line.
const Prefix = "BENCH "

// Row is one measured figure against a reference measured in the same run.
type Row struct {
	Name            string  `json:"name"`
	Figure          float64 `json:"figure"`
	Unit            string  `json:"unit"`
	Reference       string  `json:"reference"`
	ReferenceFigure float64 `json:"reference_figure"`
	// Ratio is Figure / ReferenceFigure (or as the stage defines it).
	Ratio float64 `json:"ratio"`
	// Goal is the ratio the issue asks for (0: none).
	Goal float64 `json:"goal,omitempty"`
	Note string  `json:"note,omitempty"`
}

// Stage is one benchmark's result.
type Stage struct {
	Stage string `json:"stage"`
	Rows  []Row  `json:"rows"`
}

// Line renders s as one BENCH line.
func Line(s Stage) string {
	b, _ := json.Marshal(s)
	return Prefix + string(b)
}

// Print writes s as one BENCH line to w.
func Print(w io.Writer, s Stage) {
	fmt.Fprintln(w, Line(s))
}

// Scan collects every BENCH line in r.
func Scan(r io.Reader) ([]Stage, error) {
	var out []Stage
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, Prefix+"{")
		if i < 0 {
			continue
		}
		var s Stage
		if err := json.Unmarshal([]byte(line[i+len(Prefix):]), &s); err != nil {
			return out, fmt.Errorf("bad bench line %q: %w", line, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// Markdown renders the stages as one table.
func Markdown(stages []Stage) string {
	var b strings.Builder
	b.WriteString("| stage | measure | figure | reference (same run) | ratio | goal |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, s := range stages {
		for _, r := range s.Rows {
			goal := "-"
			if r.Goal > 0 {
				mark := "met"
				if r.Ratio < r.Goal {
					mark = "NOT met"
				}
				goal = fmt.Sprintf(">= %.2f (%s)", r.Goal, mark)
			}
			note := ""
			if r.Note != "" {
				note = " (" + r.Note + ")"
			}
			fmt.Fprintf(&b, "| %s | %s%s | %.4g %s | %s: %.4g %s | %.2f | %s |\n", s.Stage, r.Name, note, r.Figure, r.Unit, r.Reference, r.ReferenceFigure, r.Unit, r.Ratio, goal)
		}
	}
	return b.String()
}
