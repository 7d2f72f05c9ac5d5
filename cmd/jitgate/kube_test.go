package main

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v3"
	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/httpapi"
)

func TestKubeExecOperation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want *broker.KubeOperation
		err  string
	}{
		{[]string{"--pod", "shop/web-1/app", "--", "ls", "-l", "/srv"}, &broker.KubeOperation{Namespace: "shop", Pod: "web-1", Container: "app", Command: []string{"ls", "-l", "/srv"}}, ""},
		{[]string{"--pod", "shop/web-1", "--", "sh", "-c", "echo a; echo b"}, &broker.KubeOperation{Namespace: "shop", Pod: "web-1", Command: []string{"sh", "-c", "echo a; echo b"}}, ""},
		{[]string{"--", "ls"}, nil, ""},
		{[]string{"--pod", "web-1", "--", "ls"}, nil, "want NAMESPACE/POD or NAMESPACE/POD/CONTAINER"},
		{[]string{"--pod", "shop/web-1/app/x", "--", "ls"}, nil, "want NAMESPACE/POD"},
		{[]string{"--pod", "shop//app", "--", "ls"}, nil, "want NAMESPACE/POD"},
		{[]string{"--pod", "shop/web-1/", "--", "ls"}, nil, "want NAMESPACE/POD"},
		{[]string{"--pod", "shop/web-1"}, nil, "--pod needs the command after --"},
	} {
		var got *broker.KubeOperation
		var gotErr error
		c := &cli.Command{Name: "exec", Flags: []cli.Flag{kubeExecFlag(), &cli.StringFlag{Name: "target"}},
			Action: func(_ context.Context, cmd *cli.Command) error { got, gotErr = kubeExecOperation(cmd); return nil }}
		if err := c.Run(context.Background(), append([]string{"exec"}, tc.args...)); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if tc.err != "" {
			if gotErr == nil || !strings.Contains(gotErr.Error(), tc.err) {
				t.Errorf("%v: err %v, want %q", tc.args, gotErr, tc.err)
			}
			continue
		}
		if gotErr != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v: got %+v, %v; want %+v", tc.args, got, gotErr, tc.want)
		}
	}
}

// TestKubeSessionEnv: connect's kubeconfig points at the proxy, trusts only
// the certificate the broker passed on, carries the grant secret as token and
// the namespace, is private, is read by the real kubectl, and is removed by
// cleanup. Without a certificate nothing is written.
func TestKubeSessionEnv(t *testing.T) {
	t.Parallel()
	// The proxy stand-in: a TLS server with a self-signed certificate for 127.0.0.1.
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(ts.Close)
	host, port, _ := net.SplitHostPort(ts.Listener.Addr().String())
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}))
	s := &httpapi.SessionResponse{Host: host, Port: port, User: "g_1", Password: "s3cret-grant", Protocol: "kube", Namespace: "shop", Certificate: certPEM}
	env, cleanup, err := sessionEnv("g_1", s)
	if err != nil {
		t.Fatal(err)
	}
	var path string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "KUBECONFIG="); ok {
			path = v
		}
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig %q: %v %v", path, st, err)
	}
	raw, _ := os.ReadFile(path)
	var kc struct {
		Clusters []struct {
			Cluster map[string]string `yaml:"cluster"`
		} `yaml:"clusters"`
		Users []struct {
			User map[string]string `yaml:"user"`
		} `yaml:"users"`
		Contexts []struct {
			Context map[string]string `yaml:"context"`
		} `yaml:"contexts"`
	}
	if err := yaml.Unmarshal(raw, &kc); err != nil || len(kc.Clusters) != 1 || len(kc.Users) != 1 || len(kc.Contexts) != 1 {
		t.Fatalf("kubeconfig: %v\n%s", err, raw)
	}
	ca, _ := base64.StdEncoding.DecodeString(kc.Clusters[0].Cluster["certificate-authority-data"])
	if kc.Clusters[0].Cluster["server"] != "https://"+ts.Listener.Addr().String() || string(ca) != certPEM ||
		kc.Users[0].User["token"] != "s3cret-grant" || kc.Contexts[0].Context["namespace"] != "shop" {
		t.Errorf("kubeconfig:\n%s", raw)
	}
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		// The real kubectl reads it, and reaches the stand-in over TLS
		// verified against exactly that certificate (the 404 is the stand-in's).
		out, err := exec.Command(kubectl, "--kubeconfig", path, "config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.server} {.contexts[0].context.namespace} {.users[0].user.token}").CombinedOutput()
		if err != nil || string(out) != "https://"+ts.Listener.Addr().String()+" shop s3cret-grant" {
			t.Errorf("kubectl config view: %v %s", err, out)
		}
		out, _ = exec.Command(kubectl, "--kubeconfig", path, "get", "--raw", "/version").CombinedOutput()
		if strings.Contains(string(out), "certificate") || !strings.Contains(string(out), "NotFound") && !strings.Contains(string(out), "404") {
			t.Errorf("kubectl against the stand-in: %s", out)
		}
	}
	cleanup()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("kubeconfig left behind: %v", err)
	}
	// No certificate from the broker, or not PEM: no kubeconfig, an error.
	for _, cert := range []string{"", "not a certificate"} {
		s.Certificate = cert
		if env, _, err := sessionEnv("g_1", s); err == nil {
			t.Errorf("certificate %q: kubeconfig written: %v", cert, env)
		}
	}
}
