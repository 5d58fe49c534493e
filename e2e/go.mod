module github.com/lookalike-dev/lookalike/e2e

go 1.26

replace github.com/lookalike-dev/lookalike/shared => ../shared
