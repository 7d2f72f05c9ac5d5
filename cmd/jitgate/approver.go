package main

import (
	"context"
	"fmt"
	"os"

	"github.com/urfave/cli/v3"

	"github.com/jitgate/jitgate/broker/httpapi"
)

func approveCommand() *cli.Command {
	return &cli.Command{
		Name:      "approve",
		Usage:     "approve a pending grant (you cannot approve your own)",
		ArgsUsage: "GRANT_ID",
		Flags:     append(clientFlags(), &cli.StringFlag{Name: "reason", Usage: "note kept with the approval"}, jsonFlag()),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			return decideGrant(ctx, cmd, "approve")
		},
	}
}

func denyCommand() *cli.Command {
	return &cli.Command{
		Name:      "deny",
		Usage:     "deny a pending grant",
		ArgsUsage: "GRANT_ID",
		Flags:     append(clientFlags(), &cli.StringFlag{Name: "reason", Usage: "why (required; the requester sees it)", Required: true}, jsonFlag()),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			return decideGrant(ctx, cmd, "deny")
		},
	}
}

func decideGrant(ctx context.Context, cmd *cli.Command, verb string) error {
	id := cmd.Args().First()
	if id == "" || cmd.Args().Len() > 1 {
		return usageErr("%s takes exactly one grant id", verb)
	}
	c, err := newClient(cmd)
	if err != nil {
		return err
	}
	var g httpapi.GrantView
	if _, err := c.do(ctx, "POST", "/v1/grants/"+id+"/"+verb, map[string]string{"reason": cmd.String("reason")}, &g); err != nil {
		return exitFor(err)
	}
	if cmd.Bool("json") {
		printJSON(os.Stdout, g)
		return nil
	}
	est := ""
	if g.EstimatedRows != nil && *g.EstimatedRows >= 0 {
		est = fmt.Sprintf("; PostgreSQL estimates %.0f row(s) touched", *g.EstimatedRows)
	}
	fmt.Printf("grant %s is now %s (%d/%d approvals; requester %s, target %s, %s access%s)\n", g.ID, g.State, countApprovals(g), max(g.Quorum, 1), g.RequesterName, g.Target, g.Access, est)
	return nil
}

func jsonFlag() cli.Flag { return &cli.BoolFlag{Name: "json", Usage: "print the grant as JSON"} }

func grantsCommand() *cli.Command {
	return &cli.Command{
		Name:  "grants",
		Usage: "list, show and wait for grants",
		Commands: []*cli.Command{
			{
				Name:  "list",
				Usage: "grants you requested or may approve",
				Flags: append(clientFlags(), &cli.StringFlag{Name: "state", Usage: "pending, approved, active, ended, denied, expired, revoked, failed"}),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					c, err := newClient(cmd)
					if err != nil {
						return err
					}
					path := "/v1/grants"
					if s := cmd.String("state"); s != "" {
						path += "?state=" + s
					}
					var out struct {
						Grants []httpapi.GrantView `json:"grants"`
					}
					if _, err := c.do(ctx, "GET", path, nil, &out); err != nil {
						return exitFor(err)
					}
					printJSON(os.Stdout, out.Grants)
					return nil
				},
			},
			{
				Name:      "get",
				Usage:     "show one grant as JSON",
				ArgsUsage: "GRANT_ID",
				Flags:     clientFlags(),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					c, err := newClient(cmd)
					if err != nil {
						return err
					}
					if cmd.Args().Len() != 1 {
						return usageErr("grants get takes one grant id")
					}
					var g httpapi.GrantView
					if _, err := c.do(ctx, "GET", "/v1/grants/"+cmd.Args().First(), nil, &g); err != nil {
						return exitFor(err)
					}
					printJSON(os.Stdout, g)
					return nil
				},
			},
			{
				Name:      "run",
				Usage:     "run an approved exec grant (after jitgate exec --no-wait and an approval)",
				ArgsUsage: "GRANT_ID",
				Flags:     append(clientFlags(), &cli.StringFlag{Name: "format", Value: "table", Usage: "table, json or csv"}, &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}}),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					if cmd.Args().Len() != 1 {
						return usageErr("grants run takes one grant id")
					}
					c, err := newClient(cmd)
					if err != nil {
						return err
					}
					return runGrant(ctx, c, cmd, cmd.Args().First(), cmd.String("format"))
				},
			},
			{
				Name:      "wait",
				Usage:     "wait until a pending grant is decided (exit 0 approved, 3 denied, 4 expired)",
				ArgsUsage: "GRANT_ID",
				Flags: append(clientFlags(),
					&cli.DurationFlag{Name: "wait-timeout", Usage: "give up after this long"},
					&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}},
					&cli.BoolFlag{Name: "wait", Value: true, Hidden: true}),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					c, err := newClient(cmd)
					if err != nil {
						return err
					}
					if cmd.Args().Len() != 1 {
						return usageErr("grants wait takes one grant id")
					}
					var g httpapi.GrantView
					if _, err := c.do(ctx, "GET", "/v1/grants/"+cmd.Args().First(), nil, &g); err != nil {
						return exitFor(err)
					}
					if g.State == "pending" {
						ng, err := waitForDecision(ctx, c, cmd, g)
						if ng != nil {
							printJSON(os.Stdout, ng)
						}
						return err
					}
					printJSON(os.Stdout, g)
					switch g.State {
					case "denied":
						return cli.Exit("", exitDenied)
					case "expired":
						return cli.Exit("", exitTimedOut)
					}
					return nil
				},
			},
		},
	}
}
