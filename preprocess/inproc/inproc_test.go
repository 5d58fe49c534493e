package inproc

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
)

func TestProcess(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 300, 200))
	for y := range 200 {
		for x := range 300 {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 90, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr bool
	}{{"png", b.Bytes(), false}, {"garbage", []byte("nope"), true}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tt, err := p.Process(context.Background(), tc.data, preprocessv1.ImageNet())
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil {
				if verr := tt.Validate(); verr != nil || tt.Shape[2] != 224 {
					t.Fatalf("tensor %v: %v", tt.Shape, verr)
				}
			}
		})
	}
}
