package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/jitgate/jitgate/broker/approvalui"
	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/broker/replayui"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/filesink"
	"github.com/jitgate/jitgate/ephemeral/record/sign"
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

// recordingPath resolves a grant id or a path to a recording file: an
// existing path as given, else <id>.jgr in the recordings directory, then in
// the spool, then a v1 <id>.jsonl.
func recordingPath(dataDir, arg string) string {
	if _, err := os.Stat(arg); err == nil {
		return arg
	}
	for _, p := range []string{
		filepath.Join(dataDir, "recordings", arg+record.Ext),
		filepath.Join(dataDir, "spool", arg+record.Ext),
		filepath.Join(dataDir, "recordings", arg+".jsonl"),
	} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join(dataDir, "recordings", arg+record.Ext)
}

func publicKeyFlag() cli.Flag {
	return &cli.StringFlag{Name: "public-key", Usage: "public key (PEM: Ed25519, or ECDSA P-256 from AWS KMS) the recording must be signed with (default DATA_DIR/" + sign.PublicKeyFileName + ")"}
}

// publicKey reads --public-key, or the data directory's key; required reports
// whether a missing default key is an error.
func publicKey(cmd *cli.Command, required bool) (crypto.PublicKey, error) {
	p := cmd.String("public-key")
	explicit := p != ""
	if !explicit {
		p = filepath.Join(cmd.String("data-dir"), sign.PublicKeyFileName)
	}
	pub, err := sign.ReadVerifyKey(p)
	if err != nil && (explicit || required) {
		return nil, usageErr("%v (pass --public-key)", err)
	}
	if err != nil {
		return nil, nil
	}
	return pub, nil
}

func replayCommand() *cli.Command {
	return &cli.Command{
		Name:      "replay",
		Usage:     "print a readable transcript of a recorded session (checked against the signing key when it is at hand)",
		ArgsUsage: "GRANT_ID|PATH",
		Flags:     []cli.Flag{dataDirFlag(), publicKeyFlag()},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			arg := cmd.Args().First()
			if arg == "" {
				return usageErr("replay needs a grant id or a recording path")
			}
			p := recordingPath(cmd.String("data-dir"), arg)
			pub, err := publicKey(cmd, false)
			if err != nil {
				return err
			}
			if pub == nil {
				// A recording given by path inside a data dir (DATA_DIR/recordings/x.jgr):
				// that data dir's key. `recording verify` never guesses like this.
				if k, err := sign.ReadVerifyKey(filepath.Join(filepath.Dir(filepath.Dir(p)), sign.PublicKeyFileName)); err == nil {
					pub = k
				}
			}
			var evs []record.Event
			rep, verr := record.VerifyFile(p, record.VerifyOptions{PublicKey: pub, OnEvent: func(ev record.Event) error {
				evs = append(evs, ev)
				return nil
			}})
			var ve *record.VerifyError
			switch {
			case verr == nil:
			case errors.As(verr, &ve) && ve.Chunk == -1 && strings.Contains(ve.Reason, "v1"):
				// A v1 recording: readable, but there is nothing to verify.
				h, v1evs, err := record.ReadFile(p)
				if err != nil {
					return cli.Exit(fmt.Sprintf("read recording %s: %v", p, err), exitError)
				}
				fmt.Fprintln(os.Stderr, "jitgate: note: a v1 recording carries no hashes or signature")
				return record.WriteTranscript(os.Stdout, h, v1evs, time.Local)
			case errors.As(verr, &ve):
			default:
				return cli.Exit(fmt.Sprintf("read recording %s: %v", p, verr), exitError)
			}
			if rep.Header.GrantID == "" {
				return cli.Exit(fmt.Sprintf("%s: %v", p, verr), exitError)
			}
			if err := record.WriteTranscript(os.Stdout, rep.Header, evs, time.Local); err != nil {
				return cli.Exit(err.Error(), exitError)
			}
			switch {
			case verr != nil && errors.Is(verr, record.ErrIncomplete):
				fmt.Fprintf(os.Stderr, "jitgate: WARNING: %s ends without its end marker after chunk %d (the proxy was killed or the file was cut)\n", p, ve.Chunk-1)
			case verr != nil:
				return cli.Exit(fmt.Sprintf("%s: BROKEN at %s; the transcript above stops before it", p, verifyWhere(ve)), exitError)
			case pub == nil:
				fmt.Fprintln(os.Stderr, "jitgate: note: signature not checked (no public key; pass --public-key)")
			default:
				fmt.Fprintf(os.Stderr, "jitgate: verified: %d chunks, complete, signed by %s\n", rep.Chunks, rep.KeyID)
			}
			return nil
		},
	}
}

func verifyWhere(ve *record.VerifyError) string {
	if ve.Chunk < 0 {
		return "the header: " + ve.Reason
	}
	return fmt.Sprintf("chunk %d: %s", ve.Chunk, ve.Reason)
}

// recordingCommand is `jitgate recording verify` and `jitgate recordings flush`.
func recordingCommand() *cli.Command {
	return &cli.Command{
		Name:    "recording",
		Aliases: []string{"recordings"},
		Usage:   "verify signed session recordings and flush the upload spool",
		Commands: []*cli.Command{
			{
				Name:      "verify",
				Usage:     "check chunk hashes, the chain and every signature; names the first bad chunk (exit 0 ok, 1 broken or incomplete)",
				ArgsUsage: "GRANT_ID|PATH",
				Flags:     []cli.Flag{dataDirFlag(), publicKeyFlag()},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					arg := cmd.Args().First()
					if arg == "" {
						return usageErr("recording verify needs a grant id or a recording path")
					}
					p := recordingPath(cmd.String("data-dir"), arg)
					if _, err := os.Stat(p); err != nil {
						return usageErr("%v", err)
					}
					pub, err := publicKey(cmd, true)
					if err != nil {
						return err
					}
					rep, err := record.VerifyFile(p, record.VerifyOptions{PublicKey: pub})
					var ve *record.VerifyError
					switch {
					case err == nil:
						msg := fmt.Sprintf("%s: ok, grant %s, %d chunks, %d events, complete, signed by %s", p, rep.Header.GrantID, rep.Chunks, rep.Events, rep.KeyID)
						if rep.Truncated {
							msg += fmt.Sprintf(" (TRUNCATED at its size cap of %d bytes, as it says)", rep.Header.MaxBytes)
						}
						fmt.Println(msg)
						return nil
					case errors.Is(err, record.ErrIncomplete):
						return cli.Exit(fmt.Sprintf("%s: INCOMPLETE: chunks 0-%d verify (%d events, signed by %s), then chunk %d is missing: %s",
							p, rep.Chunks-1, rep.Events, rep.KeyID, ve0(err).Chunk, ve0(err).Reason), exitError)
					case errors.As(err, &ve):
						return cli.Exit(fmt.Sprintf("%s: BROKEN at %s (%d chunks before it verify)", p, verifyWhere(ve), rep.Chunks), exitError)
					default:
						return cli.Exit(fmt.Sprintf("%s: %v", p, err), exitError)
					}
				},
			},
			{
				Name:  "flush",
				Usage: "store the recordings left in the spool (killed proxies, failed uploads) in the recordings directory",
				Flags: []cli.Flag{dataDirFlag(),
					&cli.StringFlag{Name: "spool", Usage: "spool directory (default DATA_DIR/spool)"},
					&cli.StringFlag{Name: "sink", Usage: "directory to store into (default DATA_DIR/recordings)"}},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					spool := firstNonEmpty(cmd.String("spool"), filepath.Join(cmd.String("data-dir"), "spool"))
					sink, err := filesink.New(filesink.Config{Dir: firstNonEmpty(cmd.String("sink"), filepath.Join(cmd.String("data-dir"), "recordings"))})
					if err != nil {
						return usageErr("%v", err)
					}
					stored, err := record.FlushSpoolStored(ctx, spool, sink, record.FlushOptions{})
					for _, st := range stored {
						fmt.Printf("stored %s → %s\n", st.GrantID, st.Location)
					}
					fmt.Printf("%d recording(s) stored\n", len(stored))
					if err != nil {
						return cli.Exit(fmt.Sprintf("some recordings stay spooled: %v", err), exitError)
					}
					return nil
				},
			},
		},
	}
}

func ve0(err error) *record.VerifyError {
	var ve *record.VerifyError
	if errors.As(err, &ve) {
		return ve
	}
	return &record.VerifyError{Chunk: -1, Reason: err.Error()}
}

func firstNonEmpty(a ...string) string {
	for _, s := range a {
		if s != "" {
			return s
		}
	}
	return ""
}

// replayUI is the replay page behind the approval page (/ui/recordings/{id}):
// recordings and their casts from DATA_DIR/recordings, then the spool,
// checked against the data directory's signing key; only viewers the approval
// page let through (approvalui.Authorized) see one.
func (s *stack) replayUI() (*replayui.Handler, error) {
	pub, err := sign.ReadPublicKey(filepath.Join(s.dataDir, sign.PublicKeyFileName))
	if err != nil {
		return nil, cli1(fmt.Errorf("replay page: %w", err))
	}
	return replayui.New(replayui.Config{
		Dirs:      []string{filepath.Join(s.dataDir, "recordings"), filepath.Join(s.dataDir, "spool")},
		Authorize: approvalui.Authorized, PublicKey: pub, Location: time.Local, Logger: s.log,
	})
}
