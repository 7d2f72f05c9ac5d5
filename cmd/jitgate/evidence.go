package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/ephemeral/record"
)

func dataDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "data-dir", Usage: "jitgate's data directory", Value: defaultDataDir(), Sources: cli.EnvVars("JITGATE_DATA_DIR")}
}

func defaultDataDir() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "jitgate")
	}
	return ".jitgate"
}

func auditCommand() *cli.Command {
	fileFlag := &cli.StringFlag{Name: "file", Usage: "audit log (default DATA_DIR/audit.jsonl)"}
	path := func(cmd *cli.Command) string {
		if f := cmd.String("file"); f != "" {
			return f
		}
		return filepath.Join(cmd.String("data-dir"), "audit.jsonl")
	}
	return &cli.Command{
		Name:  "audit",
		Usage: "check and read the hash-chained audit log",
		Commands: []*cli.Command{
			{
				Name:  "verify",
				Usage: "verify the chain; names the first edited, missing or reordered line (exit 0 ok, 1 broken)",
				Flags: []cli.Flag{fileFlag, dataDirFlag()},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					f, err := os.Open(path(cmd))
					if err != nil {
						return usageErr("%v", err)
					}
					defer f.Close()
					n, err := audit.Verify(f)
					if err != nil {
						var ve *audit.VerifyError
						if errors.As(err, &ve) {
							return cli.Exit(fmt.Sprintf("%s: BROKEN at line %d: %s", path(cmd), ve.Line, ve.Reason), exitError)
						}
						return cli.Exit(fmt.Sprintf("%s: %v", path(cmd), err), exitError)
					}
					fmt.Printf("%s: ok, %d events, chain intact\n", path(cmd), n)
					return nil
				},
			},
			{
				Name:  "tail",
				Usage: "show one grant's history",
				Flags: []cli.Flag{fileFlag, dataDirFlag(), &cli.StringFlag{Name: "grant", Required: true}},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					f, err := os.Open(path(cmd))
					if err != nil {
						return usageErr("%v", err)
					}
					defer f.Close()
					evs, err := audit.Tail(f, cmd.String("grant"))
					if err != nil {
						return cli.Exit(err.Error(), exitError)
					}
					for _, ev := range evs {
						line := fmt.Sprintf("%s  %-24s %s", ev.Time.Local().Format("15:04:05.000"), ev.Type, ev.Actor)
						if ev.Rule != "" {
							line += " rule=" + ev.Rule
						}
						if ev.LeaseID != "" {
							line += " lease=" + ev.LeaseID
						}
						if ev.Statement != "" {
							line += fmt.Sprintf(" sql=%q", ev.Statement)
						}
						if ev.Detail != "" {
							line += " " + ev.Detail
						}
						if len(ev.Reasons) > 0 {
							line += " reasons=" + strings.Join(ev.Reasons, "; ")
						}
						fmt.Println(line)
					}
					return nil
				},
			},
		},
	}
}

func replayCommand() *cli.Command {
	return &cli.Command{
		Name:      "replay",
		Usage:     "print a readable transcript of a recorded session",
		ArgsUsage: "GRANT_ID|PATH",
		Flags:     []cli.Flag{dataDirFlag()},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			arg := cmd.Args().First()
			if arg == "" {
				return usageErr("replay needs a grant id or a recording path")
			}
			p := arg
			if _, err := os.Stat(p); err != nil {
				p = filepath.Join(cmd.String("data-dir"), "recordings", arg+".jsonl")
			}
			h, evs, err := record.ReadFile(p)
			if err != nil {
				return cli.Exit(fmt.Sprintf("read recording %s: %v", p, err), exitError)
			}
			writeTranscript(os.Stdout, h, evs)
			return nil
		},
	}
}

func writeTranscript(w io.Writer, h record.Header, evs []record.Event) {
	fmt.Fprintf(w, "recording of grant %s · %s on %s · rule %s · %s mode · started %s\n", h.GrantID, h.Identity, h.Target, h.Rule, h.Mode, h.Started.Local().Format("2006-01-02 15:04:05"))
	for _, ev := range evs {
		ts := ev.Time.Local().Format("15:04:05.000")
		switch ev.Type {
		case record.Query, record.Parse:
			fmt.Fprintf(w, "%s [conn %d] > %s\n", ts, ev.Conn, ev.Statement)
		case record.Verdict:
			if ev.Allowed != nil && !*ev.Allowed {
				fmt.Fprintf(w, "%s [conn %d]   BLOCKED: %s\n", ts, ev.Conn, ev.Reason)
			}
		case record.Rows:
			writeTable(w, ev.Columns, ev.Rows)
			if int(ev.RowCount) > len(ev.Rows) {
				fmt.Fprintf(w, "(%d rows in all; %d recorded)\n", ev.RowCount, len(ev.Rows))
			}
		case record.Result:
			fmt.Fprintf(w, "%s [conn %d]   %s\n", ts, ev.Conn, ev.Tag)
		case record.Error:
			fmt.Fprintf(w, "%s [conn %d]   ERROR: %s\n", ts, ev.Conn, ev.Error)
		case record.Notice:
			fmt.Fprintf(w, "%s [conn %d]   NOTICE: %s\n", ts, ev.Conn, firstNonEmpty(ev.Error, ev.Reason, ev.Statement))
		case record.Ended:
			fmt.Fprintf(w, "%s session ended\n", ts)
		}
	}
}

func firstNonEmpty(a ...string) string {
	for _, s := range a {
		if s != "" {
			return s
		}
	}
	return ""
}
