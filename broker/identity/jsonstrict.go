package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxJSONDepth bounds nesting in token headers and payloads.
const maxJSONDepth = 32

// decodeStrictObject decodes a JSON object, refusing duplicate keys at any
// depth. Keys that differ only in case count as duplicates too: encoding/json
// matches struct fields case-insensitively, so {"aud":"a","AUD":"b"} would be
// read one way by go-oidc and another way by a map. Numbers become int64 when
// integral, float64 otherwise.
func decodeStrictObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	v, err := decodeObject(dec, 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after JSON object")
	}
	return v, nil
}

func decodeObject(dec *json.Decoder, depth int) (map[string]any, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("JSON nested too deeply")
	}
	out := map[string]any{}
	folded := map[string]string{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("bad JSON: %w", err)
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			return out, nil
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("bad JSON: object key is not a string")
		}
		lk := strings.ToLower(key)
		if prev, dup := folded[lk]; dup {
			if prev == key {
				return nil, fmt.Errorf("duplicate JSON key %q", key)
			}
			return nil, fmt.Errorf("duplicate JSON key %q (also %q)", key, prev)
		}
		folded[lk] = key
		val, err := decodeValue(dec, depth)
		if err != nil {
			return nil, err
		}
		out[key] = val
	}
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("bad JSON: %w", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return decodeObject(dec, depth+1)
		case '[':
			if depth+1 > maxJSONDepth {
				return nil, errors.New("JSON nested too deeply")
			}
			list := []any{}
			for dec.More() {
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, fmt.Errorf("bad JSON: %w", err)
			}
			return list, nil
		}
		return nil, fmt.Errorf("bad JSON: unexpected %v", t)
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i, nil
		}
		f, err := t.Float64()
		if err != nil {
			return nil, fmt.Errorf("bad JSON number %q", t.String())
		}
		return f, nil
	default: // string, bool, nil
		return t, nil
	}
}
