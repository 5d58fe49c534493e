package httpapi

import (
	"testing"

	"github.com/lookalike-dev/lookalike/shared/contract/searchv1/searchv1test"
)

// TestContractConformance runs the contract's behaviour table against the
// real service over each store; searchv1test's double passes the same table,
// so a test written against the double sees what it would see here.
func TestContractConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			searchv1test.Conformance(t, func(t *testing.T) string {
				_, url := serve(t, b.open(t))
				return url
			})
		})
	}
}
