module github.com/lookalike-dev/lookalike/shared

go 1.26
