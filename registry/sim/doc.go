// Package sim is a simulated container registry: the stand-in for a huge Quay repository
// that tagsweep's tests, benchmarks and demo mode run against. It serves HTTP (New gives an
// http.Handler, Start a listening Server) and offers direct access for test setup and
// checks (AddTags, Tags, HasTag, TagDigest, DeletedTags, Stats).
//
// # What it models
//
//   - tags/list exactly as Quay >= 3.12: n clamped silently to Config.PageCap (100), a
//     missing or non-integer n means the cap, n <= 0 an empty page; last exclusive, any
//     string, trimmed; an absolute Link with rel="next" only when more tags exist; an
//     unknown repository is 404 NAME_UNKNOWN with the OCI error body.
//   - DELETE manifests/<tag>: 202, then 404 MANIFEST_UNKNOWN. DELETE manifests/<digest>
//     removes every tag on the manifest and is counted apart (Stats.DigestDeletes):
//     tagsweep must never send it.
//   - Enough of the rest of the distribution API for regclient to push, pull and copy
//     images: manifests by tag and digest (GET, HEAD, PUT), blobs (GET, HEAD), monolithic
//     and chunked uploads, cross-repository mounts.
//   - Scale: tags live in a two-level sorted index (see index.go), so a page or a delete
//     costs the same at 10k and at 1M tags, and a million tags load in well under a second.
//     Tags share manifest digests; no manifest is stored per tag.
//   - Config.Latency and Faults (SetFaults while serving): 5xx rates and bursts, 429 with
//     and without Retry-After, connection resets, slow answers, Quay's per-IP nginx rate
//     limits (QuayLimits), and a hook that can fail one key range forever.
//   - The Quay flavour, each part off by default: /v2/auth bearer tokens with a lifetime
//     (Config.Auth); API v1 tag list, delete and create (Config.APIToken guards them); the
//     120 s tags/list page cache that deletes do not invalidate (Config.ListCacheTTL).
//   - Quay's time machine: a deleted tag's row shows in API v1's history (onlyActiveTags=false)
//     for Config.TimeMachine (two weeks by default; negative: none), and POST
//     …/tag/<tag>/restore puts the tag back at a manifest such a row or a live tag keeps.
//   - A garbage collector run on demand (GC): every repository drops each manifest that no
//     live tag and no row in the time machine points at; a GET of it by digest is then 404.
//   - Generate builds a seeded, QCI-shaped tag namespace; AddPayloads builds release
//     payloads (single- and multi-arch, with image-references) and their tag family in
//     every state a preservation pass meets, with the end state a correct run must leave.
//
// # Where it deliberately differs from Quay
//
//   - Order is Go byte order; Quay uses the database collation (unconfirmed on quay.io).
//     For 14-digit timestamp prefixes the two agree.
//   - Blobs are shared by every repository, manifest PUTs do not check that referenced
//     blobs exist, and Accept is ignored: the stored manifest is returned as is.
//   - DELETE by digest answers 202 for any manifest the repository holds, even one no tag
//     points at (Quay answers 404 then); the manifest is gone afterwards.
//   - API v1 shows deleted rows but not the rows left by moving a tag; a restore needs no row
//     of the same tag (Quay's does not either) and is not marked as a reversion. GC never runs
//     by itself. No immutable tags, tag expiration, mirror or read-only repositories, no cosign
//     sibling expiry on delete.
//   - Tokens are opaque strings, not JWTs, and any valid user gets the scopes it asks for.
//   - Rate limits are keyed by client IP only (Quay's HTTP/2 buckets are per connection).
//   - An empty tags/list page is "tags": [] (as Quay); distribution sends null.
//   - API v1 listing scans the whole repository for every page (Quay's deep OFFSET pages
//     are slow too, but for a different reason).
package sim
