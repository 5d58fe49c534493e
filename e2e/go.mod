module github.com/lookalike-dev/lookalike/e2e

go 1.26.0

replace github.com/lookalike-dev/lookalike/shared => ../shared

require (
	github.com/lookalike-dev/lookalike/embed v0.0.0
	github.com/lookalike-dev/lookalike/preprocess v0.0.0
	github.com/lookalike-dev/lookalike/search v0.0.0
	github.com/lookalike-dev/lookalike/shared v0.0.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/chewxy/math32 v1.10.1 // indirect
	github.com/corona10/goimagehash v1.1.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/nfnt/resize v0.0.0-20180221191011-83c6a9932646 // indirect
	github.com/rwcarlsen/goexif v0.0.0-20190401172101-9e8deecbddbd // indirect
	github.com/viterin/partial v1.1.0 // indirect
	github.com/viterin/vek v0.4.3 // indirect
	github.com/x448/float16 v0.8.4 // indirect
	github.com/yalue/onnxruntime_go v1.27.0 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/metric v1.47.0 // indirect
	go.yaml.in/yaml/v2 v2.4.4 // indirect
	golang.org/x/exp v0.0.0-20260908205506-85c1c2202aba // indirect
	golang.org/x/image v0.48.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
	sigs.k8s.io/yaml v1.6.0 // indirect
)

replace github.com/lookalike-dev/lookalike/preprocess => ../preprocess

replace github.com/lookalike-dev/lookalike/embed => ../embed

replace github.com/lookalike-dev/lookalike/search => ../search
