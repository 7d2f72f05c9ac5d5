package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "check policy files and decisions offline",
		Commands: []*cli.Command{{
			Name:      "check",
			Usage:     "load a policy and print the decision for an identity and statement as JSON",
			ArgsUsage: "[-- ARGV (kube targets, with --pod)]",
			Description: "Exit 0 when the decision could be evaluated (whatever it is), 2 on bad input.\n" +
				"Without --target it only validates the file. With one of --sql, --command, --http, --key or\n" +
				"--pod NS/POD[/CONTAINER] -- ARGV it decides that exec operation, as the broker would; without,\n" +
				"a session at --access.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "policy", Usage: "policy YAML file", Required: true, Sources: cli.EnvVars("JITGATE_POLICY")},
				&cli.StringFlag{Name: "target", Usage: "target name"},
				&cli.StringFlag{Name: "sub", Usage: "subject of the identity", Value: "policy-check"},
				&cli.StringFlag{Name: "groups", Usage: "comma-separated groups"},
				&cli.StringFlag{Name: "claims", Usage: "JSON file with the token's claims (groups read from the issuer's groups claim)"},
				&cli.StringFlag{Name: "sql", Usage: "exec mode: the statement (postgres targets)"},
				&cli.StringFlag{Name: "command", Usage: "exec mode: the shell command (ssh targets)"},
				&cli.StringFlag{Name: "http", Usage: `exec mode: the request (http targets), e.g. "GET /v1/flags"`},
				&cli.StringFlag{Name: "key", Usage: "exec mode: the key or key glob (config targets)"},
				kubeExecFlag(),
				&cli.StringFlag{Name: "access", Usage: "session mode: read, write or admin", Value: "read"},
				&cli.StringFlag{Name: "reason", Usage: "request reason"},
			},
			Action: policyCheck,
		}},
	}
}

// checkOutput is the JSON policy check prints.
type checkOutput struct {
	Effect     string           `json:"effect"`
	Rule       string           `json:"rule,omitempty"`
	Reasons    []string         `json:"reasons"`
	Target     string           `json:"target"`
	Access     string           `json:"access"`
	Approval   *policy.Approval `json:"approval,omitempty"`
	Statements []statementJSON  `json:"statements,omitempty"`
}

type statementJSON struct {
	SQL   string `json:"sql"`
	Kind  string `json:"kind"`
	Class string `json:"class"`
}

func policyCheck(ctx context.Context, cmd *cli.Command) error {
	p, err := policy.Load(cmd.String("policy"))
	if err != nil {
		return usageErr("%v", err)
	}
	if cmd.String("target") == "" {
		fmt.Fprintf(os.Stderr, "%s: ok (%d issuers, %d targets, %d rules)\n", cmd.String("policy"), len(p.Issuers), len(p.Targets), len(p.Rules))
		return nil
	}
	who := identity.Identity{IssuerName: "policy-check", Issuer: "policy-check", Subject: cmd.String("sub"), Claims: map[string]any{}}
	if g := cmd.String("groups"); g != "" {
		for _, s := range strings.Split(g, ",") {
			if s = strings.TrimSpace(s); s != "" {
				who.Groups = append(who.Groups, s)
			}
		}
	}
	if f := cmd.String("claims"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return usageErr("read claims: %v", err)
		}
		if err := json.Unmarshal(b, &who.Claims); err != nil {
			return usageErr("%s: not a JSON object of claims: %v", f, err)
		}
		if s, ok := who.Claims["sub"].(string); ok && !cmd.IsSet("sub") {
			who.Subject = s
		}
		groupsClaim := "groups"
		if iss, ok := who.Claims["iss"].(string); ok {
			who.Issuer = iss
			for _, is := range p.Issuers {
				if is.Issuer == iss {
					who.IssuerName = is.Name
					if is.GroupsClaim != "" {
						groupsClaim = is.GroupsClaim
					}
				}
			}
		}
		if gs, ok := who.Claims[groupsClaim].([]any); ok && !cmd.IsSet("groups") {
			for _, g := range gs {
				if s, ok := g.(string); ok {
					who.Groups = append(who.Groups, s)
				}
			}
		}
	}
	kubeOp, err := kubeExecOperation(cmd)
	if err != nil {
		return err
	}
	ops := []string{cmd.String("sql"), cmd.String("command"), cmd.String("http"), cmd.String("key")}
	n := btoi(kubeOp != nil)
	for _, o := range ops {
		n += btoi(o != "")
	}
	if n > 1 {
		return usageErr("give at most one of --sql, --command, --http, --key or --pod")
	}
	in := broker.RequestInput{Target: cmd.String("target"), Operation: strings.Join(ops, ""), Reason: cmd.String("reason"), Mode: spec.Exec}
	if kubeOp != nil {
		in.Operation = kubeOp.String()
	}
	if in.Operation == "" {
		in.Mode = spec.Session
		if in.Access, err = spec.ParseAccess(cmd.String("access")); err != nil {
			return usageErr("%v", err)
		}
	}
	ev, err := broker.Evaluate(p, who, in)
	if err != nil {
		return usageErr("%v", err)
	}
	out := checkOutput{Effect: ev.Effect.String(), Rule: ev.Decision.Rule, Reasons: ev.Reasons, Target: in.Target, Access: ev.Access.String()}
	if out.Reasons == nil {
		out.Reasons = []string{}
	}
	if ev.Effect.String() == "approve" {
		out.Approval = ev.Decision.Approval
	}
	for _, st := range ev.Statements {
		out.Statements = append(out.Statements, statementJSON{SQL: st.SQL, Kind: st.Kind, Class: st.Class})
	}
	printJSON(cmd.Root().Writer, out)
	return nil
}
