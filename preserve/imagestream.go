package preserve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tagsweep/tagsweep/proto"
)

// Reference is one entry of a payload's image-references: an ImageStream tag and the image it
// comes from, as the payload wrote it ("quay-proxy.ci.openshift.org/openshift/ci@sha256:…").
type Reference struct {
	Name  string
	Image string
}

// imageStream is the part of an image.openshift.io/v1 ImageStream that preservation reads.
type imageStream struct {
	Kind string `json:"kind"`
	Spec struct {
		Tags []struct {
			Name string `json:"name"`
			From *struct {
				Kind string `json:"kind"`
				Name string `json:"name"`
			} `json:"from"`
		} `json:"tags"`
	} `json:"spec"`
}

// ParseImageReferences reads an image-references file. Entries that come from something other
// than a DockerImage (or have no image) are left out; an entry without a name, a repeated
// name, or a document that is not an ImageStream is an error.
func ParseImageReferences(data []byte) ([]Reference, error) {
	var is imageStream
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&is); err != nil {
		return nil, fmt.Errorf("parse %s: %w", proto.ImageReferencesPath, err)
	}
	if is.Kind != "ImageStream" {
		return nil, fmt.Errorf("parse %s: kind is %q, want ImageStream", proto.ImageReferencesPath, is.Kind)
	}
	seen := make(map[string]bool, len(is.Spec.Tags))
	var out []Reference
	for i, t := range is.Spec.Tags {
		if t.Name == "" {
			return nil, fmt.Errorf("parse %s: spec.tags[%d] has no name", proto.ImageReferencesPath, i)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("parse %s: spec.tags names %q twice", proto.ImageReferencesPath, t.Name)
		}
		seen[t.Name] = true
		if t.From == nil || t.From.Name == "" || (t.From.Kind != "" && t.From.Kind != "DockerImage") {
			continue
		}
		out = append(out, Reference{Name: t.Name, Image: t.From.Name})
	}
	return out, nil
}

// SplitImage splits an image reference into its repository name (registry host, lower-cased,
// and path) and its digest, dropping a tag: "Host/a/b:t@sha256:…" is "host/a/b", "sha256:…".
// digest is "" when the reference has none.
func SplitImage(image string) (name, digest string) {
	name, digest, _ = strings.Cut(image, "@")
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name = name[:i]
	}
	if host, path, ok := strings.Cut(name, "/"); ok {
		name = strings.ToLower(host) + "/" + path
	}
	return name, digest
}

// Alias names a repository under another registry name: image references to Name are images
// of Repository on the preserved registry.
type Alias struct {
	Name       string // host/path as image references spell it
	Repository string // the repository's path on the preserved registry
}

// ParseAlias reads "host/path" (an alias of the repository with the same path) or
// "host/path=repository".
func ParseAlias(s string) (Alias, error) {
	name, repo, explicit := strings.Cut(strings.TrimSpace(s), "=")
	name, d := SplitImage(name)
	host, path, ok := strings.Cut(name, "/")
	if d != "" || !ok || host == "" || path == "" || strings.ContainsAny(name, " \t") {
		return Alias{}, fmt.Errorf("repository alias %q: want host/path or host/path=repository", s)
	}
	if !explicit {
		repo = path
	}
	if repo == "" || strings.HasPrefix(repo, "/") || strings.Contains(repo, "//") {
		return Alias{}, fmt.Errorf("repository alias %q: empty or malformed repository", s)
	}
	return Alias{Name: name, Repository: repo}, nil
}

// matcher decides whether an image reference names a repository: its own name on the
// registry, or one of its aliases. The match is exact: quay.io/openshift/ci-public is not
// quay.io/openshift/ci.
type matcher struct {
	names map[string]bool
}

func newMatcher(registryHost, repo string, aliases []Alias) matcher {
	m := matcher{names: map[string]bool{strings.ToLower(registryHost) + "/" + repo: true}}
	for _, a := range aliases {
		if a.Repository == repo {
			m.names[a.Name] = true
		}
	}
	return m
}

func (m matcher) match(image string) (digest string, ok bool) {
	name, d := SplitImage(image)
	return d, m.names[name]
}

// errConflict: one component name with different images on different platforms.
var errConflict = errors.New("component has different images on different platforms")
