package http_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// curl runs the real curl binary with a clean proxy environment plus env.
func curl(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not on PATH")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"-sS", "--max-time", "30", "-w", "\n%{http_code}"}, args...)...)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy", "curl_home", "home":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "HOME="+t.TempDir()) // no ~/.curlrc
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl %q: %v\n%s", args, err, out)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	code := 0
	for _, c := range s[i+1:] {
		code = code*10 + int(c-'0')
	}
	return s[:i], code
}

func TestCurlReverseProxy(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{})
	body, code := curl(t, nil, "-H", "Authorization: Bearer "+grantSecret, "http://"+p.addr+"/v1/users")
	if code != 200 || !jsonValid(body) || !strings.Contains(body, `"email":"********"`) {
		t.Fatalf("curl: %d %s", code, body)
	}
	noSecrets(t, "curl output", body)
	if got := up.requests()[0].Header.Get("Authorization"); got != "Bearer "+apiToken {
		t.Fatalf("upstream Authorization %q", got)
	}
	// curl normalises "/../" itself unless told not to; --path-as-is sends it raw.
	body, code = curl(t, nil, "--path-as-is", "-H", "Authorization: Bearer "+grantSecret, "http://"+p.addr+"/v1/users/../admin/x")
	if code != 403 || !strings.Contains(body, "blocked by policy: request target refused: dot segment") {
		t.Fatalf("curl traversal: %d %s", code, body)
	}
	body, code = curl(t, nil, "-X", "DELETE", "-H", "Authorization: Bearer "+grantSecret, "http://"+p.addr+"/v1/users")
	var e struct{ Error string }
	if code != 403 || json.Unmarshal([]byte(body), &e) != nil || e.Error != "blocked by policy: no allow rule matches DELETE /v1/users" {
		t.Fatalf("curl DELETE: %d %s", code, body)
	}
	body, code = curl(t, nil, "http://"+p.addr+"/v1/users")
	if code != 401 {
		t.Fatalf("curl without the secret: %d %s", code, body)
	}
}

func TestCurlThroughHTTPProxy(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{})
	// curl reads only the lower-case http_proxy for http:// URLs (httpoxy);
	// jitgate connect sets both spellings.
	proxyURL := "http://" + p.grant.ID + ":" + grantSecret + "@" + p.addr
	env := []string{"http_proxy=" + proxyURL, "HTTP_PROXY=" + proxyURL}
	target := strings.TrimPrefix(up.srv.URL, "http://")
	for _, u := range []string{"http://" + target + "/v1/users", "http://config-api/v1/users"} {
		body, code := curl(t, env, u)
		if code != 200 || !strings.Contains(body, `"email":"********"`) {
			t.Fatalf("curl %s via http_proxy: %d %s", u, code, body)
		}
		noSecrets(t, "curl output", body)
	}
	if n := len(up.requests()); n != 2 {
		t.Fatalf("upstream saw %d requests", n)
	}
	for _, r := range up.requests() {
		if r.Header.Get("Proxy-Authorization") != "" || r.Header.Get("Authorization") != "Bearer "+apiToken {
			t.Fatalf("upstream headers %v", r.Header)
		}
	}
	body, code := curl(t, env, "http://example.com/")
	if code != 403 || !strings.Contains(body, "is not this grant's target") {
		t.Fatalf("curl to another host: %d %s", code, body)
	}
	// https through the proxy would need CONNECT, which is refused.
	out, code := curlFails(t, []string{"https_proxy=" + proxyURL}, "https://"+target+"/v1/users")
	if code != 403 {
		t.Fatalf("curl https via CONNECT: %d %s", code, out)
	}
	if n := len(up.requests()); n != 2 {
		t.Fatalf("refused requests reached the upstream: %d", n)
	}
}

// curlFails runs curl expecting a non-zero exit; it returns the output and
// the status curl reported, if any.
func curlFails(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not on PATH")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"-sS", "--max-time", "30", "-w", "\n%{http_connect}"}, args...)...)
	cmd.Env = append([]string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}, env...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("curl %q succeeded: %s", args, out)
	}
	s := strings.TrimSpace(string(out))
	code := 0
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		for _, c := range s[i+1:] {
			if c >= '0' && c <= '9' {
				code = code*10 + int(c-'0')
			}
		}
	}
	return s, code
}
