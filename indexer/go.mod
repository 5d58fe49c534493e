module github.com/lookalike-dev/lookalike/indexer

go 1.26.0

require github.com/lookalike-dev/lookalike/shared v0.0.0

require golang.org/x/time v0.16.0

replace github.com/lookalike-dev/lookalike/shared => ../shared
