module github.com/lookalike-dev/lookalike/search

go 1.26
