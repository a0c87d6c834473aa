// Package deploy holds tagsweep's Kubernetes manifests (Kustomize base, components and
// overlays), the NATS Helm values and the Prometheus rules. It has no code: its tests build
// every overlay with the kustomize API, decode each object strictly into its Kubernetes API
// type, and check the manifests against what the binary actually serves and reads (probe
// paths and port, flags, environment variables, JetStream names, metric names).
package deploy
