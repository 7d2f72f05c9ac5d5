package vaulttest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The KV v2 part of the double: GET <mount>/data/<path>, answered with the
// envelope Vault documents for "Read Secret Version":
//
//	{"request_id":…, "lease_id":"", "renewable":false, "lease_duration":0,
//	 "data":{"data":{…}, "metadata":{"created_time":…, "custom_metadata":null,
//	         "deletion_time":"", "destroyed":false, "version":N}},
//	 "wrap_info":null, "warnings":null, "auth":null, "mount_type":"kv"}
//
// A deleted or destroyed version answers 404 with "data":null and its
// metadata, as Vault does; an unknown path or version answers 404
// {"errors":[]}. Writes, metadata, list and undelete are not served: tests
// seed secrets with Config.KV and PutKV.

var kvPathSegment = rolePattern

type kvSecret struct {
	versions []kvVersion // versions[i] is version i+1
}

type kvVersion struct {
	data      map[string]any
	created   time.Time
	deleted   time.Time
	destroyed bool
}

func (c *Config) validateKV() error {
	for mount, paths := range c.KV {
		if !validKVPath(mount) {
			return fmt.Errorf("vaulttest: KV mount %q must be [A-Za-z0-9_.-] segments", mount)
		}
		for p := range paths {
			if !validKVPath(p) {
				return fmt.Errorf("vaulttest: KV path %q must be [A-Za-z0-9_.-] segments", p)
			}
		}
	}
	return nil
}

func validKVPath(p string) bool {
	if p == "" {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if !kvPathSegment.MatchString(seg) || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// PutKV stores data as a new version of mount/path, creating the mount, and
// returns the version number (1 for the first write).
func (s *Server) PutKV(mount, path string, data map[string]any) int {
	mount, path = strings.Trim(mount, "/"), strings.Trim(path, "/")
	if !validKVPath(mount) || !validKVPath(path) {
		panic(fmt.Sprintf("vaulttest: PutKV: invalid mount %q or path %q", mount, path))
	}
	cp := make(map[string]any, len(data))
	for k, v := range data {
		cp[k] = v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.kv[mount]
	if m == nil {
		m = map[string]*kvSecret{}
		s.kv[mount] = m
	}
	sec := m[path]
	if sec == nil {
		sec = &kvSecret{}
		m[path] = sec
	}
	sec.versions = append(sec.versions, kvVersion{data: cp, created: s.cfg.Now().UTC()})
	return len(sec.versions)
}

// DeleteKV soft-deletes one version of mount/path (0: the latest), as
// `vault kv delete` does.
func (s *Server) DeleteKV(mount, path string, version int) {
	s.editKV(mount, path, version, func(v *kvVersion) { v.deleted = s.cfg.Now().UTC() })
}

// DestroyKV destroys one version of mount/path (0: the latest), as
// `vault kv destroy` does.
func (s *Server) DestroyKV(mount, path string, version int) {
	s.editKV(mount, path, version, func(v *kvVersion) { v.destroyed, v.data = true, nil })
}

func (s *Server) editKV(mount, path string, version int, f func(*kvVersion)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.kv[strings.Trim(mount, "/")][strings.Trim(path, "/")]
	if sec == nil || version < 0 || version > len(sec.versions) {
		panic(fmt.Sprintf("vaulttest: no version %d of %s/%s", version, mount, path))
	}
	if version == 0 {
		version = len(sec.versions)
	}
	f(&sec.versions[version-1])
}

// kvPath splits "<mount>/data/<path>" for a KV mount the double serves.
func (s *Server) kvPath(p string) (mount, secretPath string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for m := range s.kv {
		if rest, found := strings.CutPrefix(p, m+"/data/"); found {
			return m, rest, true
		}
	}
	return "", "", false
}

func (s *Server) kvRead(w http.ResponseWriter, r *http.Request, mount, path string) {
	version := 0
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeErrors(w, http.StatusBadRequest, "invalid version: "+v)
			return
		}
		version = n
	}
	ttl, wrap, err := wrapTTL(r)
	if err != nil {
		writeErrors(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	sec := s.kv[mount][path]
	var (
		v     kvVersion
		found bool
	)
	if sec != nil {
		if version == 0 {
			version = len(sec.versions)
		}
		if version >= 1 && version <= len(sec.versions) {
			v, found = sec.versions[version-1], true
		}
	}
	s.mu.Unlock()
	if !found {
		writeErrors(w, http.StatusNotFound)
		return
	}
	deletion := ""
	if !v.deleted.IsZero() {
		deletion = v.deleted.Format(time.RFC3339Nano)
	}
	meta := map[string]any{
		"created_time":    v.created.Format(time.RFC3339Nano),
		"custom_metadata": nil,
		"deletion_time":   deletion,
		"destroyed":       v.destroyed,
		"version":         version,
	}
	resp := envelope{RequestID: uuid(), MountType: "kv"}
	if v.destroyed || !v.deleted.IsZero() {
		resp.Data = map[string]any{"data": nil, "metadata": meta}
		writeJSON(w, http.StatusNotFound, resp)
		return
	}
	resp.Data = map[string]any{"data": v.data, "metadata": meta}
	if wrap {
		s.respondWrapped(w, resp, ttl, mount+"/data/"+path)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}
