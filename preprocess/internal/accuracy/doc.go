// Package accuracy holds the embedding-level accuracy test of the fast
// preprocessing path: every catalog image is preprocessed by the service's
// pipeline and by the reference (full decode + Lanczos3), both tensors go
// through the real model with ONNX Runtime, and the outputs must agree
// (cosine >= 0.99). The test needs cgo and the ONNX Runtime library
// (ONNXRUNTIME_LIB, default <repo>/.cache/onnxruntime/libonnxruntime.so.1,
// fetched by `make setup`); it fails, never skips, when either is missing.
// It is the only user of onnxruntime_go in this module.
package accuracy
