package benchreport

import (
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	in := []Stage{
		{Stage: "preprocess", Rows: []Row{{Name: "default", Figure: 28.4, Unit: "img/s", Reference: "vipsthumbnail", ReferenceFigure: 12.7, Ratio: 2.24, Goal: 1.3}}},
		{Stage: "e2e", Rows: []Row{{Name: "gateway", Figure: 8, Unit: "req/s", Reference: "in process", ReferenceFigure: 10, Ratio: 0.8, Goal: 0.85}}},
	}
	var text strings.Builder
	text.WriteString("noise before\n")
	for _, s := range in {
		text.WriteString("prefix " + Line(s) + "\n")
	}
	got, err := Scan(strings.NewReader(text.String()))
	if err != nil || len(got) != 2 || got[1].Rows[0].Ratio != 0.8 {
		t.Fatalf("Scan = %+v, %v", got, err)
	}
	md := Markdown(got)
	for _, want := range []string{"| preprocess | default | 28.4 img/s", ">= 1.30 (met)", ">= 0.85 (NOT met)"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if _, err := Scan(strings.NewReader("BENCH {broken\n")); err == nil {
		t.Error("broken line accepted")
	}
}
