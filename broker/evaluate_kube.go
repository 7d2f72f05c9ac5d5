package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"mvdan.cc/sh/v3/syntax"

	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/guard/shell"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// KubeOperation is the one operation of an exec-mode kube grant: a command run
// in one container of one pod (kubectl exec). On the wire, in
// spec.Grant.Operation and in the grant's operation hash, it is the JSON that
// String returns:
//
//	{"namespace":"shop","pod":"web-1","container":"app","command":["ls","-l","/srv"]}
type KubeOperation struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	// Container may be empty when the target does not limit containers (the
	// pod's default container then runs the command).
	Container string   `json:"container,omitempty"`
	Command   []string `json:"command"`
}

// MaxKubeOperationBytes bounds the JSON of a kube operation.
const MaxKubeOperationBytes = 64 << 10

// ParseKubeOperation reads the JSON of a kube exec operation strictly: unknown
// fields, trailing data, a missing namespace or pod, or an empty command are
// errors.
func ParseKubeOperation(s string) (KubeOperation, error) {
	var op KubeOperation
	if len(s) > MaxKubeOperationBytes {
		return op, fmt.Errorf("kube operation is larger than %d bytes", MaxKubeOperationBytes)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&op); err != nil {
		return KubeOperation{}, fmt.Errorf("kube operation: want JSON {\"namespace\",\"pod\",\"container\",\"command\":[argv]}: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return KubeOperation{}, fmt.Errorf("kube operation: trailing data after the JSON object")
	}
	switch {
	case op.Namespace == "":
		return KubeOperation{}, fmt.Errorf("kube operation: namespace is required")
	case op.Pod == "":
		return KubeOperation{}, fmt.Errorf("kube operation: pod is required")
	case len(op.Command) == 0 || op.Command[0] == "":
		return KubeOperation{}, fmt.Errorf("kube operation: command is required (an argv list, e.g. [\"ls\", \"-l\"])")
	}
	return op, nil
}

// String is the canonical JSON of the operation.
func (o KubeOperation) String() string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(o) // strings and a string slice always encode
	return strings.TrimSuffix(b.String(), "\n")
}

// CommandLine is the argv as one shell line, each word quoted so the line
// parses back to exactly argv: the form the shell guard judges. It fails for
// words no shell can hold (a NUL byte).
func (o KubeOperation) CommandLine() (string, error) {
	return QuoteArgv(o.Command)
}

// QuoteArgv joins argv into one bash line that parses back to argv.
func QuoteArgv(argv []string) (string, error) {
	words := make([]string, 0, len(argv))
	for _, a := range argv {
		q, err := syntax.Quote(a, syntax.LangBash)
		if err != nil {
			return "", fmt.Errorf("argument %q cannot be quoted for a shell: %v", a, err)
		}
		words = append(words, q)
	}
	return strings.Join(words, " "), nil
}

// evaluateKubeExec is the exec-mode branch of Evaluate for kube targets. It
// mirrors what the proxy enforces (ephemeral/engine/kube): the grant's one
// namespace, the pod and container globs, the exec switch, and the command
// judged by the same shell guard with the grant's command policy (which denies
// tar unless copy_files). A malformed operation is a bad request; an operation
// outside the grant is denied with the reason.
func evaluateKubeExec(tgt *policy.Target, operation string, ev *Evaluation, deny *[]string) error {
	op, err := ParseKubeOperation(operation)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	ev.Access = spec.Read
	g := tgt.SpecGuard(spec.Read)
	sc := g.Kube
	line, qerr := op.CommandLine()
	if qerr == nil {
		where := op.Namespace + "/" + op.Pod
		if op.Container != "" {
			where += "/" + op.Container
		}
		ev.Statements = append(ev.Statements, grant.StatementInfo{SQL: "exec " + where + " -- " + line, Kind: "exec", Class: "kube"})
	}
	switch {
	case op.Namespace != sc.Namespace:
		*deny = append(*deny, fmt.Sprintf("namespace %s is not covered by target %s (namespace %s)", op.Namespace, tgt.Name, sc.Namespace))
	case !sc.Exec:
		*deny = append(*deny, fmt.Sprintf("exec is not allowed on target %s (exec: false)", tgt.Name))
	}
	if ok, why := policy.MatchKubeScope(sc, op.Pod, op.Container); !ok {
		*deny = append(*deny, why)
	}
	if qerr != nil {
		*deny = append(*deny, "command refused: "+qerr.Error())
		return nil
	}
	sg, err := shell.New(shell.Config{Allow: g.Commands.Allow, Deny: g.Commands.Deny})
	if err != nil {
		return fmt.Errorf("broker: shell guard for %s: %w", tgt.Name, err)
	}
	v := sg.Check(line)
	for _, c := range v.Commands {
		ev.Statements = append(ev.Statements, grant.StatementInfo{SQL: strings.TrimSpace(c.Name + " " + strings.Join(c.Args, " ")), Kind: c.Name, Class: "command"})
	}
	if !v.Allowed {
		*deny = append(*deny, "command refused: "+v.Reason)
	}
	return nil
}
