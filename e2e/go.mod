module github.com/lookalike-dev/lookalike/e2e

go 1.26

require github.com/lookalike-dev/lookalike/shared v0.0.0

replace github.com/lookalike-dev/lookalike/shared => ../shared
