// Package kube is the Kubernetes API engine of the ephemeral proxy
// (engine → guard → mask → record): it faces one agent's kubectl as an
// HTTPS API server for one grant, and forwards only what the grant covers to
// the real API server with the grant's own credential.
//
//	eng, err := kube.New(kube.Config{Grant: g, Guard: shellGuard, Masker: m, Recorder: rec, Logger: log})
//	pem := eng.CertificatePEM()                // the kubeconfig's certificate-authority-data
//	go eng.Serve(ctx, conn)                    // session mode: ctx ends at the grant deadline
//	res, err := eng.Exec(ctx, g.Operation)     // exec mode: {"namespace","pod","container","command":[...]}
//
// # Facing the agent
//
// TLS with a per-grant self-signed ECDSA P-256 certificate (127.0.0.1, ::1,
// localhost; valid until the deadline) generated in memory by New, HTTP/1.1
// only (exec upgrades). Every request must carry Authorization: Bearer
// <grant secret> (compared in constant time); anything else is 401 with a
// Kubernetes Status body. Refusals are 403 Status objects whose message is
// "jitgate: <reason>", which kubectl prints as "Error from server
// (Forbidden): jitgate: ...".
//
// # What is allowed (Classify)
//
//   - discovery: GET /version, /api, /api/v1, /apis, /apis/G, /apis/G/V,
//     /openapi/v2, /openapi/v3[/...];
//   - GET of a pod in Guard.Kube.Namespace whose name matches Kube.Pods,
//     and of the namespace's pod list; with Kube.Pods set the list is fetched
//     whole as a plain PodList (no paging, at most 64 MiB) and only the
//     matching pods are passed on;
//   - pods/exec (GET with a WebSocket upgrade, POST with SPDY) when
//     Kube.Exec is set, the pod and container match their globs (a grant with
//     container globs requires container=), and the argv passes: tar (kubectl
//     cp) unless Kube.CopyFiles, then the shell guard on the argv quoted as one
//     simple command (sh -c strings recursed, wrappers such as env looked
//     through). A lone shell with tty and stdin is allowed, unfiltered but
//     recorded, only when Guard.Commands.Interactive;
//   - pods/attach (same transports as exec) when Kube.Attach is set and the
//     pod and container match their globs. There is no command to check:
//     what the agent types into the container's own process is RECORDED,
//     NOT FILTERED (the refusal text says so when Attach is off); the output
//     is masked like exec output;
//   - pods/portforward when Kube.PortForward is set and Kube.Ports names the
//     pod ports it may reach (empty: refused). Every port= value must be in
//     Ports and named once, and every stream's port header is checked when
//     the stream opens: in Ports, and among the port= values when the agent
//     named any (a second stream for a port not asked for is refused on its
//     error stream and never goes upstream).
//
// Everything else is refused: other namespaces and -A, other resources
// (secrets, ...), writes, watch, pods/proxy, services/proxy, nodes/proxy, ephemeral
// containers, logs, Impersonate-* headers, dryRun, unknown or repeated query
// parameters (command= excepted: it is argv). Paths are taken as written:
// percent-encoding, backslashes, semicolons, control bytes, empty, "." and
// ".." segments are refused rather than decoded, and the request sent
// upstream is rebuilt from the checked parts, never the agent's raw path or
// query.
//
// # Facing the API server
//
// HTTPS to Target.Address verified against Target.CA (system roots when
// empty; never skipped) and Target.ServerName, with Credential.Token as the
// bearer token; the environment's proxy settings are ignored. Only a few
// request headers are forwarded (never Authorization or Impersonate-*);
// Accept is reduced to its JSON types so responses can be masked. Pod
// objects stream back through the masker.
//
// # Exec streams
//
// The proxy terminates the agent's stream — WebSocket v5.channel.k8s.io
// (kubectl's default, with the stdin close signal) or v4.channel.k8s.io
// through apimachinery's wsstream, or SPDY/3.1 through k8s.io/cri-streaming's
// server side — and opens its own SPDY stream upstream with client-go's
// remotecommand executor. Stdin goes up, stdout and stderr come down through
// mask.Stream (the carry-over window used by the SSH engine), terminal resizes
// go up, and the exit status comes back as a v1 Status on the error channel.
//
// # Port-forward streams
//
// Facing the agent: SPDY/3.1 portforward.k8s.io (cri-streaming's server
// side), SPDY tunnelled through a WebSocket (subprotocol
// SPDY/3.1+portforward.k8s.io, kubectl's default since 1.31; client-go's
// TunnelingConnection serves the tunnel) and the older WebSocket protocol
// (v4.channel.k8s.io / portforward.k8s.io with port= values). Upstream: one
// SPDY connection per agent connection and a data/error stream pair per
// agent stream, as client-go's tools/portforward opens them. Arbitrary TCP
// is NOT MASKED: the proxy cannot know the payload's format. What passes is
// recorded instead, so port forwards do not bypass recording: one asciicast
// per stream (input: bytes to the pod, output: bytes from the pod, capped
// at MaxRecordedOutput each way with a truncation marker; bytes that are not
// UTF-8 are stored as U+FFFD) and a "result" event per stream (Tag "port N":
// bytes each way, duration, close reason).
//
// # Recording
//
// Every request is a "query" event (Tag "kube <kind>", Statement the method
// and target) and a "verdict"; forwarded reads end with a "result" (Tag
// "status N"). Each exec stream is also an asciicast v2 file next to the
// recording (masked output, input as sent), named in a "notice" event, with
// the agent's transport in another notice and the exit status as a "result"
// (Tag "exit N").
//
// Attach streams are recorded the same way (asciicast header command
// "attach <container>").
//
// # Metrics
//
// Verdicts counts every request's verdict (and every port-forward stream's);
// MaskCounts is the masker's count of masked values by detector.
//
// # Deadline
//
// When ctx ends, the agent's connection — its exec, attach and port-forward
// streams included — and the upstream streams are closed.
package kube
