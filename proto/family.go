package proto

import "strings"

// The release-payload preservation family's tag names (package preserve holds their rules):
//
//	rc_payload__<v>                    a payload, pushed by the release controller
//	remove__rc_payload__<v>            a removal request, pushed by the release controller
//	rc_payload__<v>__component__<c>    a component tag, written by preservation
//	preserved__rc_payload__<v>         a marker, written by preservation
const (
	PayloadPrefix  = "rc_payload__"
	MarkerPrefix   = "preserved__rc_payload__"
	RemovalPrefix  = "remove__rc_payload__"
	ComponentInfix = "__component__"
)

// ImageReferencesPath is the file of a release payload image that lists its components: an
// OpenShift ImageStream whose spec.tags name each component image.
const ImageReferencesPath = "release-manifests/image-references"

// PayloadFamily reports whether tag starts with a prefix of the preservation family. Such
// tags are listed and deleted by preservation alone: no prune rule may ever remove one,
// whatever it is named after.
func PayloadFamily(tag string) bool {
	return strings.HasPrefix(tag, PayloadPrefix) || strings.HasPrefix(tag, MarkerPrefix) ||
		strings.HasPrefix(tag, RemovalPrefix)
}
