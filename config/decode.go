package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// decode stores raw (a flag's typed value, an environment string or a YAML value) into
// the field ptr points at, converting it for kind. Its errors quote the value and say
// what was expected, in words rather than a parser's.
func decode(ptr any, kind Kind, raw any) error {
	if raw == nil {
		return nil // "key:" with nothing after it in the file: the default stands
	}
	conv, ok := decoders[kind]
	if !ok {
		return fmt.Errorf("unknown kind %q", kind)
	}
	v, err := conv(raw)
	if err != nil {
		return err
	}
	return set(ptr, v)
}

// decoders convert a raw value to the Go type of each kind.
var decoders = map[Kind]func(raw any) (any, error){
	KindString:   decodeString,
	KindStrings:  decodeStrings,
	KindInt:      decodeInt,
	KindInt64:    func(raw any) (any, error) { return toInt(raw) },
	KindFloat:    decodeFloat,
	KindBool:     decodeBool,
	KindDuration: decodeDuration,
}

func decodeString(raw any) (any, error) {
	s, ok := scalar(raw)
	if !ok {
		return nil, fmt.Errorf("%s is not a single value", show(raw))
	}
	return s, nil
}

func decodeStrings(raw any) (any, error) {
	switch r := raw.(type) {
	case []string:
		return r, nil
	case []any:
		list := make([]string, 0, len(r))
		for _, item := range r {
			s, ok := scalar(item)
			if !ok {
				return nil, fmt.Errorf("%s is not a list of values", show(raw))
			}
			list = append(list, s)
		}
		return list, nil
	}
	s, ok := scalar(raw)
	if !ok {
		return nil, fmt.Errorf("%s is not a list of values", show(raw))
	}
	return []string{s}, nil
}

func decodeInt(raw any) (any, error) {
	n, err := toInt(raw)
	if err != nil {
		return nil, err
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return nil, fmt.Errorf("%d is out of range", n)
	}
	return int(n), nil
}

func decodeFloat(raw any) (any, error) {
	switch r := raw.(type) {
	case float64:
		return r, nil
	case int, int64:
		n, _ := toInt(r)
		return float64(n), nil
	}
	s, _ := scalar(raw)
	x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		return nil, fmt.Errorf("%s is not a number", show(raw))
	}
	return x, nil
}

func decodeBool(raw any) (any, error) {
	if b, ok := raw.(bool); ok {
		return b, nil
	}
	s, _ := scalar(raw)
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%s is not true or false", show(raw))
	}
	return b, nil
}

// decodeDuration takes a duration with its unit. A bare number other than 0 is refused
// rather than read as nanoseconds.
func decodeDuration(raw any) (any, error) {
	switch r := raw.(type) {
	case time.Duration:
		return r, nil
	case int, int64, float64:
		if n, err := toInt(r); err == nil && n == 0 {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("%v has no unit: give a duration such as 90s, 2m or 1h30m", r)
	}
	s, ok := raw.(string)
	if !ok {
		return nil, fmt.Errorf("%s is not a duration such as 90s, 2m or 1h30m", show(raw))
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%q is not a duration such as 90s, 2m or 1h30m", s)
	}
	return d, nil
}

// toInt converts a whole number given as an integer, an integral float or a string.
func toInt(raw any) (int64, error) {
	switch r := raw.(type) {
	case int:
		return int64(r), nil
	case int64:
		return r, nil
	case uint64:
		if r <= math.MaxInt64 {
			return int64(r), nil
		}
	case float64:
		if r == math.Trunc(r) && math.Abs(r) < 1<<53 {
			return int64(r), nil
		}
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(r), 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s is not a whole number", show(raw))
}

// scalar renders a single YAML value (string, number, bool) as a string.
func scalar(raw any) (string, bool) {
	switch r := raw.(type) {
	case string:
		return r, true
	case int, int64, uint64, float64, bool:
		return fmt.Sprint(r), true
	}
	return "", false
}

// show renders a raw value for an error: strings quoted, anything else as YAML would
// print it.
func show(raw any) string {
	if s, ok := raw.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(raw)
}

// set stores v into the field ptr points at; their types must agree.
func set(ptr, v any) error {
	switch p := ptr.(type) {
	case *string:
		s, ok := v.(string)
		if ok {
			*p = s
			return nil
		}
	case *Secret:
		s, ok := v.(string)
		if ok {
			*p = Secret(s)
			return nil
		}
	case *[]string:
		s, ok := v.([]string)
		if ok {
			*p = slices.Clone(s)
			return nil
		}
	case *int:
		n, ok := v.(int)
		if ok {
			*p = n
			return nil
		}
	case *int64:
		n, ok := v.(int64)
		if ok {
			*p = n
			return nil
		}
	case *float64:
		x, ok := v.(float64)
		if ok {
			*p = x
			return nil
		}
	case *bool:
		b, ok := v.(bool)
		if ok {
			*p = b
			return nil
		}
	case *time.Duration:
		d, ok := v.(time.Duration)
		if ok {
			*p = d
			return nil
		}
	}
	return fmt.Errorf("a %T cannot hold %T", ptr, v)
}
