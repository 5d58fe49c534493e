// Package buildinfo reports which build of a service is answering.
package buildinfo

import (
	"runtime/debug"
)

// Info names a build.
type Info struct {
	Service   string `json:"service"`
	Module    string `json:"module"`
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

// Read returns the main module's path and version from the binary's build
// info. commit is set at link time (-ldflags "-X main.commit=..."); when it is
// empty the VCS revision recorded by the Go tool is used, else "unknown".
func Read(service, commit string) Info {
	inf := Info{Service: service, Version: "(devel)", Commit: commit}
	if bi, ok := debug.ReadBuildInfo(); ok {
		inf.Module = bi.Main.Path
		if bi.Main.Version != "" {
			inf.Version = bi.Main.Version
		}
		inf.GoVersion = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && inf.Commit == "" {
				inf.Commit = s.Value
			}
		}
	}
	if inf.Commit == "" {
		inf.Commit = "unknown"
	}
	return inf
}
