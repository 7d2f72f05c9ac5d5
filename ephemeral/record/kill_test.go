package record_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/filesink"
	"github.com/jitgate/jitgate/ephemeral/record/sign"
)

// The test binary doubles as a recording proxy that gets SIGKILLed: with
// JITGATE_RECORD_HELPER=1 it records into the directory named by
// JITGATE_RECORD_HELPER_DIR and never exits by itself.
func TestMain(m *testing.M) {
	if os.Getenv("JITGATE_RECORD_HELPER") == "1" {
		os.Exit(recordingHelper(os.Getenv("JITGATE_RECORD_HELPER_DIR"), os.Getenv("JITGATE_RECORD_HELPER_KEY")))
	}
	os.Exit(m.Run())
}

func recordingHelper(dir, keyPath string) int {
	key, err := sign.LoadKeyFile(keyPath)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	r, err := record.Create(context.Background(), record.Config{Dir: dir, Header: header("g-killed"), Signer: key,
		ChunkBytes: 2 << 10, FlushInterval: -1})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	for i := 0; i < 300; i++ {
		if err := r.Write(record.Event{Type: record.Query, Conn: 1, Statement: "SELECT " + strconv.Itoa(i)}); err != nil {
			fmt.Println("error", err)
			return 1
		}
	}
	if err := r.Flush(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("flushed 301")
	// More events: some chunks get sealed in the background, the tail stays in memory.
	for i := 300; i < 1300; i++ {
		_ = r.Write(record.Event{Type: record.Query, Conn: 1, Statement: "SELECT " + strconv.Itoa(i)})
	}
	fmt.Println("ready")
	time.Sleep(time.Hour) // killed long before
	return 0
}

func TestSIGKILLMidRecordingLeavesVerifiableChunks(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	spool := filepath.Join(tmp, "spool")
	keyPath := filepath.Join(tmp, sign.KeyFileName)
	key, err := sign.LoadOrCreateKeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "JITGATE_RECORD_HELPER=1", "JITGATE_RECORD_HELPER_DIR="+spool, "JITGATE_RECORD_HELPER_KEY="+keyPath)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	flushed := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "error") {
			t.Fatal("helper: " + line)
		}
		if n, ok := strings.CutPrefix(line, "flushed "); ok {
			flushed, _ = strconv.Atoi(n)
		}
		if line == "ready" {
			break
		}
	}
	if flushed == 0 {
		t.Fatal("helper never got ready")
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no Close, no deferred anything
		t.Fatal(err)
	}
	_ = cmd.Wait()

	path := filepath.Join(spool, "g-killed"+record.Ext)
	opts := record.VerifyOptions{PublicKey: key.PublicKey()}
	check := func(where, p string) record.Report {
		rep, err := record.VerifyFile(p, opts)
		if !errors.Is(err, record.ErrIncomplete) {
			t.Fatalf("%s: %v, want ErrIncomplete (the end is missing)", where, err)
		}
		if ve := verifyErr(t, err); ve.Chunk != rep.Chunks {
			t.Fatalf("%s: the gap is reported at chunk %d, with %d intact", where, ve.Chunk, rep.Chunks)
		}
		if !rep.Signed || rep.Complete || rep.Events < flushed || rep.Events >= 1302 {
			t.Fatalf("%s: report %+v (flushed %d)", where, rep, flushed)
		}
		return rep
	}
	rep := check("spool", path)
	_, evs, err := record.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Statement != "SELECT "+strconv.Itoa(i-1) {
			t.Fatalf("event %d: %q", i, evs[i].Statement)
		}
	}
	// The sweeper's flush uploads what the dead proxy left, and it verifies the same.
	sink, err := filesink.New(filesink.Config{Dir: filepath.Join(tmp, "recordings")})
	if err != nil {
		t.Fatal(err)
	}
	n, err := record.FlushSpool(ctx, spool, sink)
	if err != nil || n != 1 {
		t.Fatalf("flush: %d, %v", n, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the spooled copy stayed: %v", err)
	}
	if up := check("uploaded", sink.URI("g-killed"+record.Ext)); up != rep {
		t.Fatalf("uploaded copy reports %+v, spool %+v", up, rep)
	}
}
