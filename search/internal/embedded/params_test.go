package embedded

import "github.com/lookalike-dev/lookalike/search/internal/hnsw"

var graphParams = hnsw.Params{M: 16, EfConstruction: 100, Ef: 64}
