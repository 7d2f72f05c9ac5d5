package postgres

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	readBufSize   = 32 << 10
	flushAt       = 64 << 10 // flush a write batch once it is this large
	keepBufAtMost = 1 << 20  // a larger message buffer is dropped after use
	// maxClientMsg bounds one client message (a Query, a Parse, a CopyData).
	maxClientMsg = 64 << 20
	// maxServerMsg is PostgreSQL's own limit for one message.
	maxServerMsg = 1 << 30
)

// msgReader reads whole protocol messages (type byte, int32 length, body). The body
// returned by next is valid until the following call.
type msgReader struct {
	br  *bufio.Reader
	hdr [5]byte
	buf []byte
	max int
}

func newMsgReader(r io.Reader, max int) *msgReader {
	return &msgReader{br: bufio.NewReaderSize(r, readBufSize), max: max}
}

var errMsgTooLarge = errors.New("message too large")

func (r *msgReader) next() (byte, []byte, error) {
	if _, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(r.hdr[1:])))
	if n < 4 {
		return 0, nil, fmt.Errorf("invalid message length %d", n)
	}
	n -= 4
	if n > r.max {
		return 0, nil, fmt.Errorf("%w: %d bytes", errMsgTooLarge, n)
	}
	if n <= r.br.Size() {
		// Zero-copy: the body stays in the bufio buffer until the next read.
		b, err := r.br.Peek(n)
		if err != nil {
			return 0, nil, unexpectedEOF(err)
		}
		_, _ = r.br.Discard(n)
		return r.hdr[0], b, nil
	}
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.br, b); err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	if cap(r.buf) > keepBufAtMost {
		r.buf = nil // b stays valid for the caller; the next large message allocates again
	}
	return r.hdr[0], b, nil
}

// buffered reports whether bytes of a further message are already read.
func (r *msgReader) buffered() int { return r.br.Buffered() }

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// msgWriter batches messages for one peer. Only one goroutine appends; flushes are
// serialised with other writers of the same connection through mu, so a batch is
// never interleaved with another writer's message.
type msgWriter struct {
	w   net.Conn
	mu  *sync.Mutex
	buf []byte
}

// raw appends a message from its type and body.
func (w *msgWriter) raw(t byte, body []byte) {
	w.buf = append(w.buf, t, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(w.buf[len(w.buf)-4:], uint32(len(body)+4))
	w.buf = append(w.buf, body...)
}

// send appends an encoded message.
func (w *msgWriter) send(m pgproto3.Message) error {
	b, err := m.Encode(w.buf)
	if err != nil {
		return fmt.Errorf("encode %T: %w", m, err)
	}
	w.buf = b
	return nil
}

func (w *msgWriter) pending() int { return len(w.buf) }

func (w *msgWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if w.mu != nil {
		w.mu.Lock()
		defer w.mu.Unlock()
	}
	_, err := w.w.Write(w.buf)
	if cap(w.buf) > keepBufAtMost {
		w.buf = nil
	} else {
		w.buf = w.buf[:0]
	}
	return err
}

// writeNow writes one message immediately, outside any batch (fatal errors from a
// goroutine that does not own the batch).
func writeNow(c net.Conn, mu *sync.Mutex, timeout time.Duration, msgs ...pgproto3.Message) error {
	var buf []byte
	for _, m := range msgs {
		b, err := m.Encode(buf)
		if err != nil {
			return err
		}
		buf = b
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	mu.Lock()
	defer mu.Unlock()
	_, err := c.Write(buf)
	return err
}

// cstring reads a NUL-terminated string from b.
func cstring(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// dataRowValues splits a DataRow body into its values (nil = NULL), reusing dst.
func dataRowValues(body []byte, dst [][]byte) ([][]byte, error) {
	if len(body) < 2 {
		return nil, errors.New("short DataRow")
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	dst = dst[:0]
	for i := 0; i < n; i++ {
		if len(body) < 4 {
			return nil, errors.New("short DataRow")
		}
		l := int(int32(binary.BigEndian.Uint32(body)))
		body = body[4:]
		if l == -1 {
			dst = append(dst, nil)
			continue
		}
		if l < 0 || l > len(body) {
			return nil, errors.New("bad DataRow value length")
		}
		dst = append(dst, body[:l:l])
		body = body[l:]
	}
	if len(body) != 0 {
		return nil, errors.New("trailing bytes in DataRow")
	}
	return dst, nil
}

// appendDataRow appends a DataRow message with vals.
func appendDataRow(buf []byte, vals [][]byte) []byte {
	start := len(buf)
	buf = append(buf, 'D', 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(buf[start+5:], uint16(len(vals)))
	for _, v := range vals {
		if v == nil {
			buf = binary.BigEndian.AppendUint32(buf, 0xffffffff)
			continue
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(v)))
		buf = append(buf, v...)
	}
	binary.BigEndian.PutUint32(buf[start+1:], uint32(len(buf)-start-1))
	return buf
}
