package ssh

import (
	"bufio"
	"crypto/rand"
	"io"
	"sync"
)

// bufferedRand is crypto/rand read 4 KiB at a time, safe for concurrent use.
// x/crypto draws a few bytes of random padding for every packet it sends;
// read one by one that was a getrandom call per 32 KiB packet, about a tenth
// of the proxy's CPU on bulk transfers. The bytes are still crypto/rand's.
type bufferedRand struct {
	mu sync.Mutex
	r  *bufio.Reader
}

func newBufferedRand() *bufferedRand {
	return &bufferedRand{r: bufio.NewReaderSize(rand.Reader, 4096)}
}

func (b *bufferedRand) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return io.ReadFull(b.r, p)
}
