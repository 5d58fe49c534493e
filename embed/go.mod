module github.com/lookalike-dev/lookalike/embed

go 1.26
