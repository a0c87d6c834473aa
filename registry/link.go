package registry

import (
	"slices"
	"strings"
)

// hasNextLink reports whether Link header values (RFC 8288) hold a link with rel "next".
// The target is not needed: the next page is asked for with last=<last tag of this page>.
func hasNextLink(values []string) bool {
	for _, v := range values {
		for {
			v = strings.TrimLeft(v, " \t,")
			if !strings.HasPrefix(v, "<") {
				break
			}
			end := strings.IndexByte(v, '>')
			if end < 0 {
				break
			}
			v = v[end+1:]
			var rel string
			v, rel = linkParams(v)
			if slices.Contains(strings.Fields(strings.ToLower(rel)), "next") {
				return true
			}
		}
	}
	return false
}

// linkParams reads the ";name=value" parameters of one link-value and returns the rest of
// the header after it and the value of its rel parameter.
func linkParams(v string) (rest, rel string) {
	for {
		v = strings.TrimLeft(v, " \t")
		if !strings.HasPrefix(v, ";") {
			return v, rel
		}
		v = strings.TrimLeft(v[1:], " \t")
		i := strings.IndexAny(v, "=;,")
		if i < 0 {
			return "", rel
		}
		name := strings.ToLower(strings.TrimSpace(v[:i]))
		if v[i] != '=' {
			v = v[i:]
			continue
		}
		v = strings.TrimLeft(v[i+1:], " \t")
		var value string
		if strings.HasPrefix(v, `"`) {
			end := 1
			for end < len(v) && v[end] != '"' {
				if v[end] == '\\' {
					end++
				}
				end++
			}
			value = strings.ReplaceAll(v[1:min(end, len(v))], `\`, "")
			v = v[min(end+1, len(v)):]
		} else {
			end := strings.IndexAny(v, ";,")
			if end < 0 {
				end = len(v)
			}
			value, v = strings.TrimSpace(v[:end]), v[end:]
		}
		if name == "rel" && rel == "" {
			rel = value
		}
	}
}
