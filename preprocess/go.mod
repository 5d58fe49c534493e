module github.com/lookalike-dev/lookalike/preprocess

go 1.26
