// Command jitgate is the one CLI for everything: the local stack (`dev`), the
// broker (`broker serve`), agents' commands (`exec`, `connect`, `request`,
// `grants`), approvers' commands (`approve`, `deny`), evidence tools (`replay`,
// `audit verify`), `policy check`, and the hidden ephemeral proxy entry point the
// local launcher starts. It (with functions/) is the only place that reads the
// environment or files.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v3"
)

// Exit codes, documented in the README.
const (
	exitOK       = 0
	exitError    = 1 // the operation failed (target down, internal error)
	exitUsage    = 2 // bad input: flags, files, policy
	exitDenied   = 3 // policy or an approver denied, or the proxy blocked the statement
	exitTimedOut = 4 // approval did not come in time, or the grant expired
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args))
}

func run(ctx context.Context, args []string) int {
	app := newApp()
	err := app.Run(ctx, args)
	if err == nil {
		return exitOK
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "jitgate:", msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "jitgate:", err)
	return exitUsage
}

func newApp() *cli.Command {
	return &cli.Command{
		Name:  "jitgate",
		Usage: "just-in-time, per-request access for AI agents and CI jobs",
		Description: "Every operation gets its own grant: policy decides, a human approves when the rule says so,\n" +
			"an ephemeral proxy injects a per-grant credential, blocks what policy forbids, masks what\n" +
			"comes back, records the session, and the credential is revoked.",
		EnableShellCompletion: true,
		HideHelpCommand:       true,
		ExitErrHandler:        func(context.Context, *cli.Command, error) {},
		OnUsageError: func(ctx context.Context, cmd *cli.Command, err error, isSubcommand bool) error {
			return cli.Exit(fmt.Sprintf("%v (see: jitgate %s --help)", err, cmd.Name), exitUsage)
		},
		Commands: []*cli.Command{
			devCommand(),
			brokerCommand(),
			requestCommand(),
			execCommand(),
			connectCommand(),
			approveCommand(),
			denyCommand(),
			grantsCommand(),
			policyCommand(),
			auditCommand(),
			replayCommand(),
			recordingCommand(),
			mcpCommand(),
			doctorCommand(),
			proxyCommand(),
		},
	}
}

func usageErr(format string, a ...any) error { return cli.Exit(fmt.Sprintf(format, a...), exitUsage) }
