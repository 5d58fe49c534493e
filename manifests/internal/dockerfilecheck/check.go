// Package dockerfilecheck checks the services' Dockerfiles without a container engine: they parse
// (BuildKit's own parser), are multi-stage, pin their base images, copy only paths that exist in the build
// context (the repo root, after .dockerignore), take --from only from earlier stages, and end as a
// numeric non-root USER with an ENTRYPOINT whose environment carries the Go runtime setting every
// Lookalike process runs with (RuntimeGODEBUG).
package dockerfilecheck

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// RuntimeGODEBUG is the GODEBUG entry every service image sets: it keeps the Go runtime's sysmon out
// of deep sleep, so system calls stop waking it ~1,000 times a second (shared/sysmon explains and
// tests it; this module does not depend on shared, so the value is repeated here).
const RuntimeGODEBUG = "schedtrace=2147483647"

// Spec is what one Dockerfile must be.
type Spec struct {
	Path string // relative to the context root, e.g. "gateway/Dockerfile"
	// CGO is the CGO_ENABLED value the build stage must set ("0" for static binaries).
	CGO string
	// BuildPackage is the Go package built, relative to the root (e.g. "gateway/cmd/gateway"); it must exist.
	BuildPackage string
}

// Expected lists the project's Dockerfiles.
var Expected = []Spec{
	{"gateway/Dockerfile", "0", "gateway/cmd/gateway"},
	{"preprocess/Dockerfile", "1", "preprocess/cmd/preprocess"},
	{"search/Dockerfile", "0", "search/cmd/search"},
	{"indexer/Dockerfile", "0", "indexer/cmd/indexer"},
	{"embed/Dockerfile", "1", "embed/cmd/embed"},
	{"embed/Dockerfile.gpu", "1", "embed/cmd/embed"},
}

type stage struct {
	name    string
	base    string
	user    string
	entry   bool
	env     map[string]string
	line    int
	hasUser bool
}

// Check checks one Dockerfile against spec, with root as the build context.
func Check(root string, spec Spec) []string {
	var problems []string
	bad := func(line int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d: %s", spec.Path, line, fmt.Sprintf(format, args...)))
	}
	data, err := os.ReadFile(filepath.Join(root, spec.Path))
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", spec.Path, err)}
	}
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return []string{fmt.Sprintf("%s: parse: %v", spec.Path, err)}
	}
	ignore, err := dockerignore(root)
	if err != nil {
		return []string{err.Error()}
	}
	args := map[string]string{} // global ARG defaults (before the first FROM)
	var stages []*stage
	var cur *stage
	for _, n := range res.AST.Children {
		cmd := strings.ToLower(n.Value)
		words := nodeWords(n)
		switch cmd {
		case "arg":
			for _, w := range words {
				k, v, _ := strings.Cut(w, "=")
				if cur == nil {
					args[k] = v
				} else if _, ok := cur.env[k]; !ok {
					cur.env[k] = args[k]
					if v != "" {
						cur.env[k] = v
					}
				}
			}
		case "from":
			if len(words) == 0 {
				bad(n.StartLine, "FROM without an image")
				continue
			}
			cur = &stage{base: expand(words[0], args), env: map[string]string{}, line: n.StartLine}
			if len(words) >= 3 && strings.EqualFold(words[1], "as") {
				cur.name = strings.ToLower(words[2])
			}
			for _, s := range stages {
				if cur.name != "" && s.name == cur.name {
					bad(n.StartLine, "stage name %q used twice", cur.name)
				}
			}
			stages = append(stages, cur)
			checkBase(cur.base, stages[:len(stages)-1], func(f string, a ...any) { bad(n.StartLine, f, a...) })
		case "env":
			if cur == nil {
				continue
			}
			// the parser yields (name, value, separator) triplets
			for i := 0; i+1 < len(words); i += 3 {
				cur.env[words[i]] = words[i+1]
			}
		case "user":
			if cur != nil && len(words) > 0 {
				cur.user, cur.hasUser = words[0], true
			}
		case "entrypoint", "cmd":
			if cur != nil {
				cur.entry = true
			}
		case "copy", "add":
			if cur == nil {
				bad(n.StartLine, "%s before FROM", cmd)
				continue
			}
			from := flagValue(n.Flags, "from")
			if len(words) < 2 {
				bad(n.StartLine, "%s needs a source and a destination", cmd)
				continue
			}
			srcs := words[:len(words)-1]
			if from != "" {
				if !earlierStage(stages[:len(stages)-1], from) {
					bad(n.StartLine, "COPY --from=%s: no earlier stage of that name", from)
				}
				continue
			}
			for _, src := range srcs {
				if cmd == "add" && (strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")) {
					continue
				}
				checkSource(root, src, ignore, func(f string, a ...any) { bad(n.StartLine, f, a...) })
			}
		case "run":
			if cur != nil && strings.Contains(strings.Join(words, " "), "go build") {
				if got := cur.env["CGO_ENABLED"]; got != spec.CGO {
					bad(n.StartLine, "go build with CGO_ENABLED=%q, want %q", got, spec.CGO)
				}
			}
		}
	}
	if len(stages) < 2 {
		bad(1, "not multi-stage (%d stage)", len(stages))
		return problems
	}
	final := stages[len(stages)-1]
	switch {
	case !final.hasUser:
		bad(final.line, "final stage sets no USER (it would run as root)")
	case !nonRootNumeric(final.user):
		bad(final.line, "final USER %q must be a numeric non-root uid[:gid] (runAsNonRoot can only verify numbers)", final.user)
	}
	if !final.entry {
		bad(final.line, "final stage has no ENTRYPOINT")
	}
	if !hasEntry(final.env["GODEBUG"], RuntimeGODEBUG) {
		bad(final.line, "final stage sets no GODEBUG=%s (got %q): sysmon would wake on every system call after an idle moment (see shared/sysmon)", RuntimeGODEBUG, final.env["GODEBUG"])
	}
	if spec.BuildPackage != "" {
		if fi, err := os.Stat(filepath.Join(root, spec.BuildPackage)); err != nil || !fi.IsDir() {
			bad(1, "builds %s, which does not exist", spec.BuildPackage)
		}
	}
	return problems
}

// hasEntry reports whether a comma-separated GODEBUG value holds entry.
func hasEntry(godebug, entry string) bool {
	for _, kv := range strings.Split(godebug, ",") {
		if strings.TrimSpace(kv) == entry {
			return true
		}
	}
	return false
}

func nodeWords(n *parser.Node) []string {
	var out []string
	for w := n.Next; w != nil; w = w.Next {
		out = append(out, w.Value)
	}
	return out
}

func flagValue(flags []string, name string) string {
	for _, f := range flags {
		if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
			return strings.ToLower(v)
		}
	}
	return ""
}

var argRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

func expand(s string, args map[string]string) string {
	return argRef.ReplaceAllStringFunc(s, func(m string) string {
		return args[argRef.FindStringSubmatch(m)[1]]
	})
}

func earlierStage(stages []*stage, name string) bool {
	for _, s := range stages {
		if s.name == name {
			return true
		}
	}
	return false
}

// checkBase: an earlier stage, scratch, or an image with an explicit tag that is not latest.
func checkBase(base string, earlier []*stage, bad func(string, ...any)) {
	if base == "scratch" || earlierStage(earlier, strings.ToLower(base)) {
		return
	}
	if strings.Contains(base, "@sha256:") {
		return
	}
	last := base[strings.LastIndex(base, "/")+1:]
	i := strings.LastIndex(last, ":")
	switch {
	case base == "" || strings.HasSuffix(base, ":") || strings.HasSuffix(base, "-") || strings.Contains(base, ":-") || strings.HasPrefix(last, "-"):
		bad("base image %q has an empty part (undefined ARG?)", base)
	case i < 0:
		bad("base image %q has no tag", base)
	case last[i+1:] == "latest":
		bad("base image %q uses latest", base)
	}
}

func nonRootNumeric(user string) bool {
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || strings.Trim(uid, "0123456789") != "" {
		return false
	}
	return strings.TrimLeft(uid, "0") != ""
}

// checkSource: the path (or glob) matches something in the context that .dockerignore lets through.
func checkSource(root, src string, ignore *patternmatcher.PatternMatcher, bad func(string, ...any)) {
	clean := filepath.Clean(strings.TrimPrefix(src, "/"))
	if strings.HasPrefix(clean, "..") {
		bad("COPY source %s is outside the build context", src)
		return
	}
	matches, err := filepath.Glob(filepath.Join(root, clean))
	if err != nil || len(matches) == 0 {
		bad("COPY source %s does not exist in the build context", src)
		return
	}
	for _, m := range matches {
		rel, _ := filepath.Rel(root, m)
		if ignored, _ := ignore.MatchesOrParentMatches(filepath.ToSlash(rel)); !ignored {
			return
		}
	}
	bad("COPY source %s is excluded by .dockerignore", src)
}

func dockerignore(root string) (*patternmatcher.PatternMatcher, error) {
	var patterns []string
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	switch {
	case err == nil:
		defer f.Close()
		patterns, err = ignorefile.ReadAll(f)
		if err != nil {
			return nil, fmt.Errorf(".dockerignore: %w", err)
		}
	case !os.IsNotExist(err):
		return nil, err
	}
	return patternmatcher.New(patterns)
}

// CheckAll checks every expected Dockerfile.
func CheckAll(root string) []string {
	var all []string
	for _, s := range Expected {
		all = append(all, Check(root, s)...)
	}
	return all
}
