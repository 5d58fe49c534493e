package canary

// OverlapAtK is the share of the top k results of a that are also in the
// top k of b: |a[:k] ∩ b[:k]| / min(k, max(len a, len b)). Two empty lists
// agree completely (1); one empty list and one not share nothing (0). A
// SKU repeated within one list counts once.
func OverlapAtK(a, b []string, k int) float64 {
	if k <= 0 {
		return 0
	}
	a, b = a[:min(k, len(a))], b[:min(k, len(b))]
	denom := max(len(a), len(b))
	if denom == 0 {
		return 1
	}
	inB := make(map[string]bool, len(b))
	for _, s := range b {
		inB[s] = true
	}
	seen := make(map[string]bool, len(a))
	common := 0
	for _, s := range a {
		if inB[s] && !seen[s] {
			common++
		}
		seen[s] = true
	}
	return float64(common) / float64(denom)
}
