// Package record writes and reads the session recording of one grant: the last
// step inside the ephemeral proxy before upload (engine → guard → mask → record →
// upload).
//
// # Format v2 (written by this package)
//
// A recording is one append-only file, <dir>/<grant id>.jgr, mode 0600:
//
//	"jitgate-recording/v2\n"          magic
//	frame 'H'  header (JSON Header)   exactly once, first
//	frame 'C'  chunk 0                zstd-compressed JSON Lines events
//	frame 'S'  seal 0                 JSON {"seal": SealBody, "sig": base64 Ed25519}
//	frame 'C'  chunk 1
//	frame 'S'  seal 1
//	...                               the last seal has "final": true
//
// A frame is a kind byte, a big-endian uint32 length and that many bytes. Each
// seal names its chunk's index, SHA-256, compressed and raw size, event count,
// first and last event time, and the chain hash of the previous seal ("prev";
// for chunk 0 the SHA-256 of the magic and header frame). The chain hash of a
// seal is the SHA-256 of its exact body bytes, so every seal commits to the
// header and to every chunk before it: the seals are the manifest, and each one
// is a signed manifest head. The signature covers SealDomain followed by the
// body bytes, made by a Signer (a key file in dev; KMS or Vault transit behind
// the same interface in production).
//
// Events are buffered into a chunk of ChunkBytes (or FlushInterval's worth,
// whichever comes first); a background goroutine compresses, hashes, signs and
// appends it, so Write (the proxy's hot path) only encodes JSON into memory. A
// proxy killed mid-session leaves every sealed chunk intact and verifiable and no
// final seal: Verify reports the missing end. At most FlushInterval of events
// plus one unsealed chunk are lost.
//
// Open/Create write the header and a chunk holding the "started" event, signed
// and fsynced, before returning, so nothing the proxy relays runs unrecorded, and
// a recording that cannot be written refuses the session. Close writes "ended"
// into the final chunk, flushes and fsyncs.
//
// MaxBytes caps the raw event bytes of one recording: the event that would pass
// it is replaced by a "truncated" event, the recording is sealed, and every later
// Write fails with ErrTruncated so the engine ends the session (nothing runs
// unrecorded). One event is trimmed to MaxEventBytes (rows first, then long
// texts), and marked Trimmed. Memory is bounded by ChunkBytes times
// (MaxPendingChunks+1); disk by MaxBytes.
//
// A Recorder is safe for concurrent use by the connections of one session. The
// first error is sticky, so the engine can end the session (fail closed) as soon
// as the recording cannot be kept. Rows are recorded after masking: a recording
// never holds what the client was not allowed to see.
//
//	rec, err := record.Create(ctx, record.Config{Dir: spool, Header: record.Header{GrantID: g.ID, ...}, Signer: signer})
//	if err != nil { /* refuse the session */ }
//	defer rec.Close()
//	if err := rec.Write(record.Event{Type: record.Query, Conn: 1, Statement: sql}); err != nil { /* end session */ }
//
// Terminal sessions write asciicast companion files next to the recording
// ("<grant id>.<channel>.cast", package asciicast). Close seals each one by
// SHA-256 into the final chunk (notice events tagged CompanionTag), so the
// signature covers the casts too; Companions and Companion.Check verify a
// cast against its recording, and replay refuses one that does not match.
//
// Seals are signed with Ed25519 (key files, Vault transit, KMS where it has
// Ed25519 keys) or ECDSA P-256 (AWS KMS ECDSA_SHA_256 elsewhere); Verify
// accepts both key types (see Signer).
//
// After Close the session uploads the file to a Sink (UploadRetry); what cannot
// be uploaded stays in the spool directory, and FlushSpool retries it later
// (the broker's sweeper, `jitgate recordings flush`). Verify checks a recording
// offline; ReadFile reads its events (v1 JSON Lines files too).
package record

import (
	"errors"
	"time"
)

// Format is the recording format written by this package, stamped into every header.
const Format = "jitgate-recording/v2"

// FormatV1 is the earlier plain JSON Lines format (<grant id>.jsonl), still read by ReadFile.
const FormatV1 = "jitgate-recording/v1"

// Ext is the file name extension of a v2 recording.
const Ext = ".jgr"

// MaxRowsPerEvent is the number of rows a producer should put into one "rows" event
// (the engine caps each statement's recorded rows at this and records the total in
// RowCount). Write enforces it by truncating longer row lists.
const MaxRowsPerEvent = 1000

var (
	// ErrClosed is returned by Write after Close.
	ErrClosed = errors.New("record: recorder closed")
	// ErrTruncated is returned by Write once the recording reached its size cap.
	ErrTruncated = errors.New("record: recording size cap reached")
)

// Header is the first record of a recording.
type Header struct {
	// Format is set by Open to the package's Format.
	Format   string `json:"format"`
	GrantID  string `json:"grant_id"`
	Identity string `json:"identity"`
	Target   string `json:"target"`
	Rule     string `json:"rule"`
	LeaseID  string `json:"lease_id,omitempty"`
	// Version is the version of the jitgate build that wrote the recording.
	Version string    `json:"version,omitempty"`
	Mode    string    `json:"mode"`
	Started time.Time `json:"started"`
	// Compression of the chunks (v2): "zstd".
	Compression string `json:"compression,omitempty"`
	// KeyID names the signing key (KeyID of its public key); empty when unsigned (v2).
	KeyID string `json:"key_id,omitempty"`
	// MaxBytes is the size cap the recording was written under (v2).
	MaxBytes int64 `json:"max_bytes,omitempty"`
}

// EventType names what an Event records. It is a closed set.
type EventType string

const (
	Started EventType = "started"
	// Query is a simple-protocol Query message (the whole string, all statements).
	Query EventType = "query"
	// Parse is an extended-protocol Parse (Statement holds the SQL, Tag the statement name).
	Parse EventType = "parse"
	// Bind binds a portal (Tag) to a statement; Statement holds the statement's SQL.
	Bind EventType = "bind"
	// Execute runs a portal; Statement holds the SQL of the portal's statement.
	Execute EventType = "execute"
	// Verdict is the guard's decision on the preceding statement.
	Verdict EventType = "verdict"
	// Rows carries the column names and (masked) rows of one result, capped.
	Rows EventType = "rows"
	// Result is a command tag (CommandComplete).
	Result EventType = "result"
	// Error is an error sent to the client (masked), or a protocol error.
	Error EventType = "error"
	// Notice is a NoticeResponse or NotificationResponse (masked).
	Notice EventType = "notice"
	// Truncated marks where the recording reached its size cap; Reason says so.
	// Nothing after it but "ended" is recorded, and the session is ended.
	Truncated EventType = "truncated"
	Ended     EventType = "ended"
)

var eventTypes = map[EventType]bool{Started: true, Query: true, Parse: true, Bind: true, Execute: true,
	Verdict: true, Rows: true, Result: true, Error: true, Notice: true, Truncated: true, Ended: true}

// Valid reports whether t is one of the known event types.
func (t EventType) Valid() bool { return eventTypes[t] }

func (t EventType) String() string { return string(t) }

// Event is one line of a recording after the header.
type Event struct {
	Time time.Time `json:"time"`
	Type EventType `json:"type"`
	// Conn numbers the client connections of a session, from 1; 0 is the session itself.
	Conn      int    `json:"conn,omitempty"`
	Statement string `json:"statement,omitempty"`
	// Allowed is set on Verdict events.
	Allowed *bool    `json:"allowed,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	Columns []string `json:"columns,omitempty"`
	// Rows are masked values; nil is SQL NULL. At most MaxRowsPerEvent are kept.
	Rows [][]*string `json:"rows,omitempty"`
	// RowCount is the number of rows the result really had (may exceed len(Rows)).
	RowCount int64  `json:"row_count,omitempty"`
	Tag      string `json:"tag,omitempty"`
	Error    string `json:"error,omitempty"`
	// Trimmed says the recorder cut this event's rows or texts to MaxEventBytes.
	Trimmed bool `json:"trimmed,omitempty"`
}
