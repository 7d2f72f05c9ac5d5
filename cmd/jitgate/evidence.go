package main

import (
	"bufio"
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/urfave/cli/v3"

	"github.com/jitgate/jitgate/broker/approvalui"
	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/broker/replayui"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/asciicast"
	"github.com/jitgate/jitgate/ephemeral/record/filesink"
	"github.com/jitgate/jitgate/ephemeral/record/s3sink"
	"github.com/jitgate/jitgate/ephemeral/record/sign"
	"github.com/jitgate/jitgate/ephemeral/record/sign/kmssign"
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
		Name:  "replay",
		Usage: "print a readable transcript of a recorded session and play its terminal casts (checked against the signing key when it is at hand)",
		Description: "SQL and HTTP sessions are printed as a transcript: statement, verdict, masked rows as tables.\n" +
			"Terminal sessions (ssh shells) then play at their recorded pace, escape sequences that could\n" +
			"reach your clipboard or terminal title removed: Enter pauses and resumes, --speed 2 plays twice\n" +
			"as fast, --no-wait prints at once, --step stops before each command the user sent until you\n" +
			"press Enter.\n" +
			"A cast is played only if the recording sealed it (or the recording was cut short, with a warning).\n" +
			"s3://bucket/key recordings are fetched with the AWS SDK's standard configuration (AWS_REGION,\n" +
			"AWS_ENDPOINT_URL, credentials), their casts with them.",
		ArgsUsage: "GRANT_ID|PATH|s3://BUCKET/KEY",
		Flags: []cli.Flag{dataDirFlag(), publicKeyFlag(), kmsKeyFlag(),
			&cli.FloatFlag{Name: "speed", Value: 1, Usage: "terminal playback speed (2 is twice as fast)"},
			&cli.BoolFlag{Name: "no-wait", Usage: "print terminal output at once, without the recorded pauses"},
			&cli.BoolFlag{Name: "step", Usage: "stop before each command of a terminal session until Enter is pressed"},
			&cli.DurationFlag{Name: "idle-limit", Value: 2 * time.Second, Usage: "cap every recorded pause at this (0: no cap)"},
			&cli.BoolFlag{Name: "transcript-only", Usage: "print the transcript, play no terminal cast"}},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			arg := cmd.Args().First()
			if arg == "" {
				return usageErr("replay needs a grant id, a recording path or an s3:// URI")
			}
			if sp := cmd.Float("speed"); !(sp > 0) || sp > 1000 {
				return usageErr("--speed must be above 0 and at most 1000")
			}
			p, cleanup, err := resolveRecording(ctx, cmd, arg)
			if err != nil {
				return err
			}
			defer cleanup()
			pub, err := verifyKeyFor(ctx, cmd, false)
			if err != nil {
				return err
			}
			if pub == nil && !strings.HasPrefix(arg, "s3://") {
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
			incomplete := verr != nil && errors.Is(verr, record.ErrIncomplete)
			switch {
			case incomplete:
				fmt.Fprintf(os.Stderr, "jitgate: WARNING: %s ends without its end marker after chunk %d (the proxy was killed or the file was cut)\n", arg, ve.Chunk-1)
			case verr != nil:
				return cli.Exit(fmt.Sprintf("%s: BROKEN at %s; the transcript above stops before it", arg, verifyWhere(ve)), exitError)
			case pub == nil:
				fmt.Fprintln(os.Stderr, "jitgate: note: signature not checked (no public key; pass --public-key)")
			default:
				fmt.Fprintf(os.Stderr, "jitgate: verified: %d chunks, complete, signed by %s\n", rep.Chunks, rep.KeyID)
			}
			if cmd.Bool("transcript-only") {
				return nil
			}
			opts := asciicast.PlayOptions{Speed: cmd.Float("speed"), NoWait: cmd.Bool("no-wait"), IdleLimit: cmd.Duration("idle-limit")}
			if !cmd.Bool("step") && !cmd.Bool("no-wait") {
				// Enter pauses and resumes the playback.
				var p asciicast.Pauser
				opts.Sleep = p.Sleep
				go func() {
					in := bufio.NewReader(os.Stdin)
					for {
						if _, err := in.ReadString('\n'); err != nil {
							return
						}
						if p.Toggle() {
							fmt.Fprint(os.Stderr, "\r\n\x1b[7m jitgate: paused — Enter resumes \x1b[0m\r\n")
						}
					}
				}()
			}
			if cmd.Bool("step") {
				in := bufio.NewReader(os.Stdin)
				opts.Step = func(ctx context.Context) error {
					fmt.Fprint(os.Stderr, "\r\n\x1b[7m jitgate: next command — press Enter \x1b[0m")
					if _, err := in.ReadString('\n'); err != nil {
						return fmt.Errorf("step: %w", err)
					}
					return nil
				}
			}
			return playCasts(ctx, p, rep.Header.GrantID, evs, incomplete, opts)
		},
	}
}

// castPlan is one terminal cast of a recording and whether it may be played.
type castPlan struct {
	Name string
	Path string
	// Problem is why the cast is not played as sealed evidence: "" (sealed
	// and matching), or a reason.
	Problem string
	// Fatal: the cast contradicts its recording (edited, replaced); nothing is
	// played and the command fails.
	Fatal bool
	// Missing: sealed, but not stored next to the recording (replay warns,
	// verify fails: evidence is missing).
	Missing bool
}

// planCasts checks the casts next to the recording at p against the digests
// it sealed. An incomplete recording (its proxy was killed) sealed none: its
// casts are played with a warning.
func planCasts(p, grantID string, evs []record.Event, incomplete bool) []castPlan {
	dir := filepath.Dir(p)
	var plans []castPlan
	sealed := map[string]bool{}
	for _, c := range record.Companions(evs) {
		if !record.IsCompanionName(grantID, c.Name) {
			continue
		}
		sealed[c.Name] = true
		cp := castPlan{Name: c.Name, Path: filepath.Join(dir, c.Name)}
		f, err := os.Open(cp.Path)
		if err != nil {
			cp.Problem, cp.Missing = "sealed by the recording but not found next to it", true
		} else {
			if err := c.Check(f); err != nil {
				cp.Problem, cp.Fatal = "does not match the digest the recording sealed (edited or replaced)", true
			}
			f.Close()
		}
		plans = append(plans, cp)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		n := e.Name()
		if sealed[n] || !e.Type().IsRegular() || !record.IsCompanionName(grantID, n) {
			continue
		}
		cp := castPlan{Name: n, Path: filepath.Join(dir, n)}
		if incomplete {
			cp.Problem = "not sealed (the recording was cut short before it could seal its casts)"
		} else {
			cp.Problem, cp.Fatal = "not sealed by the recording, which is complete: it was added later", true
		}
		plans = append(plans, cp)
	}
	return plans
}

func playCasts(ctx context.Context, p, grantID string, evs []record.Event, incomplete bool, opts asciicast.PlayOptions) error {
	plans := planCasts(p, grantID, evs, incomplete)
	var fatal []string
	for _, cp := range plans {
		if cp.Fatal {
			fatal = append(fatal, cp.Name+": "+cp.Problem)
		}
	}
	if len(fatal) > 0 {
		return cli.Exit("jitgate: BROKEN terminal casts, none played:\n  "+strings.Join(fatal, "\n  "), exitError)
	}
	for _, cp := range plans {
		if cp.Missing {
			fmt.Fprintf(os.Stderr, "jitgate: WARNING: terminal cast %s %s\n", cp.Name, cp.Problem)
			continue
		}
		f, err := os.Open(cp.Path)
		if err != nil {
			return cli.Exit(err.Error(), exitError)
		}
		h, castEvs, err := asciicast.Read(f)
		f.Close()
		if err != nil {
			return cli.Exit(fmt.Sprintf("terminal cast %s: %v", cp.Name, err), exitError)
		}
		if cp.Problem != "" {
			fmt.Fprintf(os.Stderr, "jitgate: WARNING: terminal cast %s is %s\n", cp.Name, cp.Problem)
		}
		fmt.Fprintf(os.Stderr, "jitgate: ── terminal %s (%dx%d) ──\n", cp.Name, h.Width, h.Height)
		if err := asciicast.Play(ctx, os.Stdout, castEvs, opts); err != nil {
			return cli.Exit(fmt.Sprintf("terminal cast %s: %v", cp.Name, err), exitError)
		}
		fmt.Fprintf(os.Stderr, "\njitgate: ── end of %s ──\n", cp.Name)
	}
	return nil
}

// resolveRecording is recordingPath, and for s3://bucket/key a download of the
// recording and its casts into a temporary directory (removed by cleanup).
func resolveRecording(ctx context.Context, cmd *cli.Command, arg string) (string, func(), error) {
	if !strings.HasPrefix(arg, "s3://") {
		return recordingPath(cmd.String("data-dir"), arg), func() {}, nil
	}
	cfg, err := awsConfig(ctx)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "jitgate-replay-")
	if err != nil {
		return "", nil, cli1(err)
	}
	cleanup := func() { os.RemoveAll(dir) }
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.BaseEndpoint != nil || os.Getenv("JITGATE_S3_PATH_STYLE") == "true"
	})
	got, err := s3sink.Fetch(ctx, client, arg, dir)
	if err != nil {
		cleanup()
		return "", nil, cli1(err)
	}
	return got.Path, cleanup, nil
}

func awsConfig(ctx context.Context) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, cli1(fmt.Errorf("aws config: %w", err))
	}
	return cfg, nil
}

func kmsKeyFlag() cli.Flag {
	return &cli.StringFlag{Name: "kms-key", Usage: "AWS KMS key (id, ARN or alias) whose public key the recording must be signed with (the runner's JITGATE_RECORDING_SIGNING_KEY)"}
}

// verifyKeyFor is --kms-key's public key (kms:GetPublicKey), else publicKey.
func verifyKeyFor(ctx context.Context, cmd *cli.Command, required bool) (crypto.PublicKey, error) {
	k := cmd.String("kms-key")
	if k == "" {
		return publicKey(cmd, required)
	}
	if cmd.String("public-key") != "" {
		return nil, usageErr("pass --public-key or --kms-key, not both")
	}
	cfg, err := awsConfig(ctx)
	if err != nil {
		return nil, err
	}
	pemBytes, err := kmssign.PublicKeyPEM(ctx, kms.NewFromConfig(cfg), k)
	if err != nil {
		return nil, cli1(err)
	}
	return sign.ParseVerifyKey(pemBytes)
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
				ArgsUsage: "GRANT_ID|PATH|s3://BUCKET/KEY",
				Flags:     []cli.Flag{dataDirFlag(), publicKeyFlag(), kmsKeyFlag()},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					arg := cmd.Args().First()
					if arg == "" {
						return usageErr("recording verify needs a grant id, a recording path or an s3:// URI")
					}
					pub, err := verifyKeyFor(ctx, cmd, true)
					if err != nil {
						return err
					}
					lp, cleanup, err := resolveRecording(ctx, cmd, arg)
					if err != nil {
						return err
					}
					defer cleanup()
					if _, err := os.Stat(lp); err != nil {
						return usageErr("%v", err)
					}
					var evs []record.Event
					rep, err := record.VerifyFile(lp, record.VerifyOptions{PublicKey: pub, OnEvent: func(ev record.Event) error {
						if ev.Type == record.Notice && ev.Tag == record.CompanionTag {
							evs = append(evs, ev)
						}
						return nil
					}})
					p := arg // what the user named, in messages
					if !strings.HasPrefix(arg, "s3://") {
						p = lp
					}
					var ve *record.VerifyError
					switch {
					case err == nil:
						msg := fmt.Sprintf("%s: ok, grant %s, %d chunks, %d events, complete, signed by %s", p, rep.Header.GrantID, rep.Chunks, rep.Events, rep.KeyID)
						if rep.Truncated {
							msg += fmt.Sprintf(" (TRUNCATED at its size cap of %d bytes, as it says)", rep.Header.MaxBytes)
						}
						var bad []string
						for _, cp := range planCasts(lp, rep.Header.GrantID, evs, false) {
							switch {
							case cp.Fatal, cp.Missing:
								bad = append(bad, cp.Name+": "+cp.Problem)
							case cp.Problem != "":
								msg += fmt.Sprintf("; cast %s %s", cp.Name, cp.Problem)
							default:
								msg += fmt.Sprintf("; cast %s matches its seal", cp.Name)
							}
						}
						if len(bad) > 0 {
							return cli.Exit(fmt.Sprintf("%s: the recording verifies, but its terminal casts do NOT:\n  %s", p, strings.Join(bad, "\n  ")), exitError)
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
				Usage: "store the recordings left in the spool (killed proxies, failed uploads) in the recordings directory or S3",
				Flags: []cli.Flag{dataDirFlag(),
					&cli.StringFlag{Name: "spool", Usage: "spool directory (default DATA_DIR/spool)"},
					&cli.StringFlag{Name: "sink", Usage: "directory, or s3://BUCKET/PREFIX/, to store into (default DATA_DIR/recordings)"},
					&cli.StringFlag{Name: "sse-kms-key", Usage: "s3 sink: KMS key objects are encrypted with (default the account's aws/s3 key)"}},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					spool := firstNonEmpty(cmd.String("spool"), filepath.Join(cmd.String("data-dir"), "spool"))
					sink, err := flushSink(ctx, cmd)
					if err != nil {
						return err
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

// flushSink is --sink: a directory (filesink) or s3://bucket/prefix/ (s3sink,
// the SDK's standard configuration).
func flushSink(ctx context.Context, cmd *cli.Command) (record.Sink, error) {
	dst := firstNonEmpty(cmd.String("sink"), filepath.Join(cmd.String("data-dir"), "recordings"))
	rest, ok := strings.CutPrefix(dst, "s3://")
	if !ok {
		sink, err := filesink.New(filesink.Config{Dir: dst})
		if err != nil {
			return nil, usageErr("%v", err)
		}
		return sink, nil
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	cfg, err := awsConfig(ctx)
	if err != nil {
		return nil, err
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.BaseEndpoint != nil || os.Getenv("JITGATE_S3_PATH_STYLE") == "true"
	})
	sink, err := s3sink.New(s3sink.Config{Client: client, Bucket: bucket, Prefix: prefix, KMSKeyID: cmd.String("sse-kms-key")})
	if err != nil {
		return nil, usageErr("--sink %s: %v", dst, err)
	}
	return sink, nil
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
