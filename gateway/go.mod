module github.com/lookalike-dev/lookalike/gateway

go 1.26
