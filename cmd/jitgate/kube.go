package main

import (
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v3"
	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/httpapi"
)

// kubeExecFlag is jitgate exec's flag for kube targets.
func kubeExecFlag() cli.Flag {
	return &cli.StringFlag{Name: "pod", Usage: "kube targets: NAMESPACE/POD[/CONTAINER] to run the command after -- in, e.g. --pod shop/web-1/app -- ls -l /srv"}
}

// kubeExecOperation reads --pod and the argv after -- into the operation of a
// kube exec grant. It returns nil when --pod is not given.
func kubeExecOperation(cmd *cli.Command) (*broker.KubeOperation, error) {
	pod := cmd.String("pod")
	if pod == "" {
		return nil, nil
	}
	parts := strings.Split(pod, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" || (len(parts) == 3 && parts[2] == "") {
		return nil, usageErr("--pod %q: want NAMESPACE/POD or NAMESPACE/POD/CONTAINER", pod)
	}
	argv := cmd.Args().Slice()
	if len(argv) == 0 || argv[0] == "" {
		return nil, usageErr("--pod needs the command after --, e.g. jitgate exec --target %s --pod %s -- ls -l", cmd.String("target"), pod)
	}
	op := &broker.KubeOperation{Namespace: parts[0], Pod: parts[1], Command: argv}
	if len(parts) == 3 {
		op.Container = parts[2]
	}
	return op, nil
}

// kubeconfig is the subset of a kubeconfig file jitgate connect writes.
type kubeconfig struct {
	APIVersion     string         `yaml:"apiVersion"`
	Kind           string         `yaml:"kind"`
	Clusters       []namedCluster `yaml:"clusters"`
	Users          []namedUser    `yaml:"users"`
	Contexts       []namedContext `yaml:"contexts"`
	CurrentContext string         `yaml:"current-context"`
}

type namedCluster struct {
	Name    string `yaml:"name"`
	Cluster struct {
		Server                   string `yaml:"server"`
		CertificateAuthorityData string `yaml:"certificate-authority-data"` // base64 of the PEM
	} `yaml:"cluster"`
}

type namedUser struct {
	Name string `yaml:"name"`
	User struct {
		Token string `yaml:"token"`
	} `yaml:"user"`
}

type namedContext struct {
	Name    string `yaml:"name"`
	Context struct {
		Cluster   string `yaml:"cluster"`
		User      string `yaml:"user"`
		Namespace string `yaml:"namespace,omitempty"`
	} `yaml:"context"`
}

// kubeSessionEnv writes a kubeconfig for a kube session proxy (server
// https://host:port, the proxy's certificate as the only CA, the grant secret
// as bearer token, the target's namespace) into a private temporary directory
// and points KUBECONFIG at it. cleanup removes it.
func kubeSessionEnv(grantID string, s *httpapi.SessionResponse, env []string) ([]string, func(), error) {
	// The broker passes on the certificate the proxy reported when it
	// started; without it nothing is trusted (no pinning of whatever answers).
	certPEM := s.Certificate
	if certPEM == "" {
		return nil, func() {}, errors.New("the broker sent no certificate for the kube session proxy; refusing to write a kubeconfig that trusts whatever answers")
	}
	if blk, _ := pem.Decode([]byte(certPEM)); blk == nil || blk.Type != "CERTIFICATE" {
		return nil, func() {}, errors.New("the session proxy's certificate is not PEM")
	}
	dir, err := os.MkdirTemp("", "jitgate-kube-")
	if err != nil {
		return nil, func() {}, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	name := "jitgate-" + grantID
	var kc kubeconfig
	kc.APIVersion, kc.Kind, kc.CurrentContext = "v1", "Config", name
	var cl namedCluster
	cl.Name = name
	cl.Cluster.Server = "https://" + net.JoinHostPort(s.Host, s.Port)
	cl.Cluster.CertificateAuthorityData = base64.StdEncoding.EncodeToString([]byte(certPEM))
	var u namedUser
	u.Name = name
	u.User.Token = s.Password
	var cx namedContext
	cx.Name = name
	cx.Context.Cluster, cx.Context.User, cx.Context.Namespace = name, name, s.Namespace
	kc.Clusters, kc.Users, kc.Contexts = []namedCluster{cl}, []namedUser{u}, []namedContext{cx}
	b, err := yaml.Marshal(&kc)
	if err != nil {
		cleanup()
		return nil, func() {}, err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		cleanup()
		return nil, func() {}, err
	}
	return append(env, "KUBECONFIG="+path, "JITGATE_KUBECONFIG="+path, "JITGATE_NAMESPACE="+s.Namespace), cleanup, nil
}

// btoi is 1 for true, for counting the exec flags given.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
