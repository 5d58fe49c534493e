// Package resample is the fused resize + crop + orientation + normalisation
// step: it maps every output pixel straight back to the decoded pixels (at
// whatever scale they were decoded), filters only the rows and columns the
// output needs, and writes normalised values in the requested layout.
//
// All geometry is computed from the FULL-resolution stored size, never from
// the size of a reduced decode, so a DCT-scaled decode lands on the same crop
// as a full decode would.
package resample

import (
	"fmt"
	"math"
)

// Kernel is a separable reconstruction filter.
type Kernel struct {
	Name    string
	Support float64 // radius at scale 1; 0 means nearest neighbour
	Fn      func(x float64) float64
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	x *= math.Pi
	return math.Sin(x) / x
}

// KernelFor maps a spec interpolation name to its kernel.
func KernelFor(name string) (Kernel, error) {
	switch name {
	case "bilinear":
		return Kernel{Name: name, Support: 1, Fn: func(x float64) float64 {
			x = math.Abs(x)
			if x < 1 {
				return 1 - x
			}
			return 0
		}}, nil
	case "lanczos3":
		return Kernel{Name: name, Support: 3, Fn: func(x float64) float64 {
			x = math.Abs(x)
			if x < 3 {
				return sinc(x) * sinc(x/3)
			}
			return 0
		}}, nil
	case "catmullrom":
		return Kernel{Name: name, Support: 2, Fn: func(x float64) float64 {
			x = math.Abs(x)
			switch {
			case x < 1:
				return (1.5*x-2.5)*x*x + 1
			case x < 2:
				return ((-0.5*x+2.5)*x-4)*x + 2
			}
			return 0
		}}, nil
	case "box":
		return Kernel{Name: name, Support: 0.5, Fn: func(x float64) float64 {
			if x >= -0.5 && x < 0.5 {
				return 1
			}
			return 0
		}}, nil
	case "nearest":
		return Kernel{Name: name}, nil
	}
	return Kernel{}, fmt.Errorf("unknown interpolation %q", name)
}

// Resize modes (the preprocessv1 names).
const (
	ShorterCrop = "shorter_crop"
	Letterbox   = "letterbox"
	Squash      = "squash"
)

// Target is the output the spec asks for.
type Target struct {
	Mode    string
	W, H    int
	Shorter int // ShorterCrop only
	Kernel  Kernel
}

// Layout is where the resized image sits in the output, in the oriented
// frame: output pixel X shows resized pixel X+OffX, and the resized image is
// RW x RH pixels for an oriented source of W x H.
type Layout struct {
	RW, RH     int
	OffX, OffY int
}

func roundPos(v float64) int { return max(1, int(math.Round(v))) }

// LayoutFor computes the layout for an oriented source size w x h.
func LayoutFor(t Target, w, h int) Layout {
	switch t.Mode {
	case Squash:
		return Layout{RW: t.W, RH: t.H}
	case Letterbox:
		s := math.Min(float64(t.W)/float64(w), float64(t.H)/float64(h))
		l := Layout{RW: min(t.W, roundPos(float64(w)*s)), RH: min(t.H, roundPos(float64(h)*s))}
		l.OffX, l.OffY = -(t.W-l.RW)/2, -(t.H-l.RH)/2
		return l
	default: // ShorterCrop
		var l Layout
		if w <= h {
			l.RW, l.RH = t.Shorter, max(t.Shorter, roundPos(float64(h)*float64(t.Shorter)/float64(w)))
		} else {
			l.RW, l.RH = max(t.Shorter, roundPos(float64(w)*float64(t.Shorter)/float64(h))), t.Shorter
		}
		// Same anchor as imaging.CropAnchor(..., Center).
		l.OffX, l.OffY = (l.RW-t.W)/2, (l.RH-t.H)/2
		return l
	}
}

// Oriented returns the displayed size of a stored w x h image.
func Oriented(w, h, orientation int) (int, int) {
	if orientation >= 5 && orientation <= 8 {
		return h, w
	}
	return w, h
}

// ResizeScale is the largest output-per-source pixel ratio of the two axes:
// how much of the full-resolution detail the output keeps.
func ResizeScale(t Target, storedW, storedH, orientation int) float64 {
	w, h := Oriented(storedW, storedH, orientation)
	l := LayoutFor(t, w, h)
	return math.Max(float64(l.RW)/float64(w), float64(l.RH)/float64(h))
}
