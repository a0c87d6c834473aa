package registry

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// stubTransport answers every request with an empty 202.
type stubTransport struct{}

func (stubTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusAccepted, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}}, nil
}

// BenchmarkCredentialEdge is the edge's cost on a registry request carrying the bearer token
// the previous one carried (every request of a worker between token refreshes).
func BenchmarkCredentialEdge(b *testing.B) {
	e, err := newCredentialEdge(stubTransport{}, "quay.io", false, nil, newRedactor(nil))
	if err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodDelete, "https://quay.io/v2/openshift/ci/manifests/20261101000000_prune_x", nil)
	req.Header.Set("Authorization", "Bearer "+strings.Repeat("t", 800))
	b.ReportAllocs()
	for b.Loop() {
		resp, err := e.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}

// BenchmarkCredentialEdgeBaseline is the same request straight to the stub, for comparison.
func BenchmarkCredentialEdgeBaseline(b *testing.B) {
	req, _ := http.NewRequest(http.MethodDelete, "https://quay.io/v2/openshift/ci/manifests/20261101000000_prune_x", nil)
	req.Header.Set("Authorization", "Bearer "+strings.Repeat("t", 800))
	b.ReportAllocs()
	for b.Loop() {
		resp, err := stubTransport{}.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}
