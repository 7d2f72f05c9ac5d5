package ssh

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
)

// The strict key exchange markers (OpenSSH's countermeasure to Terrapin,
// CVE-2023-48795). x/crypto/ssh offers them and switches to strict mode when
// the peer offers its own, but has no option to require it; kexCheckConn adds
// that: it reads the peer's identification line and first KEXINIT packet
// before handing them on, and fails the connection when the peer does not
// offer strict key exchange.
const (
	kexStrictClient = "kex-strict-c-v00@openssh.com"
	kexStrictServer = "kex-strict-s-v00@openssh.com"
)

// ErrNoStrictKex is the error a connection fails with when the peer does not
// offer strict key exchange.
var ErrNoStrictKex = errors.New("ssh: peer does not offer strict key exchange (kex-strict, Terrapin countermeasure)")

const (
	maxPreKex       = 64 << 10 // identification lines plus the first packet
	msgKexInit byte = 20
)

// kexCheckConn holds back what the peer sends until its first KEXINIT is
// complete and offers want. Both SSH sides send their identification before
// reading the peer's, so holding the peer's back cannot deadlock.
type kexCheckConn struct {
	net.Conn
	want    string
	decided bool
	held    []byte
	out     []byte
	err     error
}

func newKexCheck(c net.Conn, want string) *kexCheckConn {
	return &kexCheckConn{Conn: c, want: want}
}

func (c *kexCheckConn) Read(p []byte) (int, error) {
	if len(c.out) > 0 {
		n := copy(p, c.out)
		c.out = c.out[n:]
		return n, nil
	}
	if c.decided {
		return c.Conn.Read(p)
	}
	if c.err != nil {
		return 0, c.err
	}
	tmp := make([]byte, 4096)
	for {
		ok, complete, err := offersKex(c.held, c.want)
		if err != nil {
			c.err = err
			return 0, err
		}
		if complete {
			if !ok {
				c.err = ErrNoStrictKex
				return 0, c.err
			}
			c.decided = true
			c.out, c.held = c.held, nil
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		if len(c.held) > maxPreKex {
			c.err = fmt.Errorf("ssh: peer sent %d bytes without a complete KEXINIT", len(c.held))
			return 0, c.err
		}
		n, err := c.Conn.Read(tmp)
		c.held = append(c.held, tmp[:n]...)
		if err != nil && n == 0 {
			c.err = err
			return 0, err
		}
	}
}

// offersKex parses identification lines and the first binary packet (which
// must be KEXINIT and is unencrypted) from b. complete is false while more
// bytes are needed.
func offersKex(b []byte, want string) (ok, complete bool, err error) {
	// Lines before "SSH-" are allowed from servers (RFC 4253 4.2).
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(b) > 8192 {
				return false, false, errors.New("ssh: identification line too long")
			}
			return false, false, nil
		}
		line := b[:i]
		b = b[i+1:]
		if bytes.HasPrefix(line, []byte("SSH-")) {
			if !bytes.HasPrefix(line, []byte("SSH-2.0-")) && !bytes.HasPrefix(line, []byte("SSH-1.99-")) {
				return false, false, fmt.Errorf("ssh: unsupported protocol version %q", bytes.TrimSpace(line))
			}
			break
		}
	}
	if len(b) < 6 {
		return false, false, nil
	}
	plen := binary.BigEndian.Uint32(b)
	if plen < 2 || plen > 35000 {
		return false, false, fmt.Errorf("ssh: first packet length %d", plen)
	}
	if b[5] != msgKexInit {
		return false, false, fmt.Errorf("ssh: first packet is message %d, not KEXINIT", b[5])
	}
	p := b[6:]
	if len(p) < 16+4 {
		return false, false, nil
	}
	p = p[16:] // cookie
	n := binary.BigEndian.Uint32(p)
	if n > plen {
		return false, false, errors.New("ssh: malformed KEXINIT")
	}
	if uint32(len(p)-4) < n {
		return false, false, nil
	}
	for _, alg := range bytes.Split(p[4:4+n], []byte(",")) {
		if string(alg) == want {
			return true, true, nil
		}
	}
	return false, true, nil
}
