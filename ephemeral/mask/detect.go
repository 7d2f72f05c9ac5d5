package mask

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
	"sync/atomic"
)

// Detector names, as used in Config.Detectors and Counts.
const (
	DetectCreditCard    = "credit_card"
	DetectEmail         = "email"
	DetectUSSSN         = "us_ssn"
	DetectIBAN          = "iban"
	DetectAWSAccessKey  = "aws_access_key"
	DetectAWSSecretKey  = "aws_secret_key"
	DetectJWT           = "jwt"
	DetectPEMPrivateKey = "pem_private_key"
	DetectTokenPrefix   = "token_prefix"
)

// finder returns the first match in b at or after from, as b[start:end].
type finder func(b []byte, from int) (start, end int, ok bool)

type detector struct {
	name  string
	find  finder
	count atomic.Uint64
}

var finders = []struct {
	name string
	find finder
}{
	{DetectCreditCard, findCard},
	{DetectEmail, findEmail},
	{DetectUSSSN, findSSN},
	{DetectIBAN, findIBAN},
	{DetectAWSAccessKey, findAWSAccessKey},
	{DetectAWSSecretKey, findAWSSecretKey},
	{DetectJWT, findJWT},
	{DetectPEMPrivateKey, findPEMPrivateKey},
	{DetectTokenPrefix, findTokenPrefix},
}

// DetectorNames lists every detector, in the order Text runs them.
func DetectorNames() []string {
	out := make([]string, len(finders))
	for i, f := range finders {
		out[i] = f.name
	}
	return out
}

func newDetectors() []*detector {
	out := make([]*detector, len(finders))
	for i, f := range finders {
		out[i] = &detector{name: f.name, find: f.find}
	}
	return out
}

func detectorByName(n string) *detector {
	for _, f := range finders {
		if f.name == n {
			return &detector{name: f.name, find: f.find}
		}
	}
	return nil
}

type span struct {
	s, e int
	d    *detector // nil when spans of different detectors were merged
}

// Text runs the enabled detectors over free text (result values, error and notice
// fields, CopyData, NOTIFY payloads, ParameterStatus values) and returns it with every
// match masked in the configured style. It returns b itself, without allocating, when
// nothing matched. The output is valid UTF-8 whenever b is: detectors only match ASCII.
// Every match counts once in Counts under its detector.
func (m *Masker) Text(b []byte) []byte {
	if len(m.detectors) == 0 || len(b) == 0 {
		return b
	}
	spans := m.scan(b, nil)
	for _, sp := range spans {
		sp.d.count.Add(1)
	}
	return m.apply(b, spans)
}

// masked is Text without counting, for rescans of text already counted.
func (m *Masker) masked(b []byte) []byte {
	if len(m.detectors) == 0 || len(b) == 0 {
		return b
	}
	return m.apply(b, m.scan(b, nil))
}

// scan appends every detector match in b to spans, unmerged, without counting.
func (m *Masker) scan(b []byte, spans []span) []span {
	for _, d := range m.detectors {
		for from := 0; from < len(b); {
			s, e, ok := d.find(b, from)
			if !ok {
				break
			}
			if e <= s { // a finder bug must not loop or leak: mask the byte
				e = s + 1
			}
			spans = append(spans, span{s, e, d})
			from = e
		}
	}
	return spans
}

// apply returns b with spans (from scan; sorted and merged in place) masked,
// or b itself when there are none.
func (m *Masker) apply(b []byte, spans []span) []byte {
	if len(spans) == 0 {
		return b
	}
	slices.SortFunc(spans, func(a, b span) int {
		if a.s != b.s {
			return a.s - b.s
		}
		return b.e - a.e
	})
	merged := spans[:1]
	for _, sp := range spans[1:] {
		last := &merged[len(merged)-1]
		if sp.s < last.e {
			if sp.e > last.e {
				last.e = sp.e
			}
			if sp.d != last.d {
				last.d = nil
			}
			continue
		}
		merged = append(merged, sp)
	}
	out := make([]byte, 0, len(b)+8*len(merged))
	prev := 0
	for _, sp := range merged {
		out = append(out, b[prev:sp.s]...)
		out = m.maskSpan(out, b[sp.s:sp.e], sp.d)
		prev = sp.e
	}
	return append(out, b[prev:]...)
}

// maskSpan appends the masked form of one detected secret.
func (m *Masker) maskSpan(out, v []byte, d *detector) []byte {
	name := ""
	if d != nil {
		name = d.name
	}
	switch m.style {
	case StyleToken:
		return append(out, m.token(normalizeSecret(name, v))...)
	case StylePartial:
		switch name {
		case DetectCreditCard:
			digitsLeft := countDigits(v) - 4
			for _, c := range v {
				if isDigit(c) && digitsLeft > 0 {
					c = '*'
					digitsLeft--
				}
				out = append(out, c)
			}
			return out
		case DetectEmail:
			at := bytes.LastIndexByte(v, '@')
			for i, c := range v {
				if i < at {
					c = starUnlessSep(c)
				}
				out = append(out, c)
			}
			return out
		}
	}
	for _, c := range v {
		out = append(out, starUnlessSep(c))
	}
	return out
}

func countDigits(v []byte) int {
	n := 0
	for _, c := range v {
		if isDigit(c) {
			n++
		}
	}
	return n
}

// starUnlessSep keeps layout bytes (so masked text keeps its shape) and replaces
// everything else, in particular every letter and digit, with '*'.
func starUnlessSep(c byte) byte {
	switch c {
	case ' ', '-', '.', '@', '\n', '\r', '\t', ':':
		return c
	}
	return '*'
}

// normalizeSecret makes equal secrets in different layouts give equal tokens.
func normalizeSecret(name string, v []byte) []byte {
	switch name {
	case DetectCreditCard, DetectUSSSN, DetectIBAN:
		out := make([]byte, 0, len(v))
		for _, c := range v {
			if isAlnum(c) {
				out = append(out, upper(c))
			}
		}
		return out
	case DetectEmail:
		return bytes.ToLower(v)
	}
	return v
}

// ---- byte classes ----

const (
	clDigit uint8 = 1 << iota
	clUpper
	clLower
	clB64    // + /
	clURL    // - _
	clLocal  // . % + - _ (email local part extras)
	clDomain // - (domain extras besides alnum and '.')
)

var class = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] |= clDigit
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] |= clUpper
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= clLower
	}
	t['+'] |= clB64
	t['/'] |= clB64
	t['-'] |= clURL | clLocal | clDomain
	t['_'] |= clURL | clLocal
	t['.'] |= clLocal
	t['%'] |= clLocal
	t['+'] |= clLocal
	return t
}()

const clAlnum = clDigit | clUpper | clLower

func isDigit(c byte) bool { return c-'0' < 10 }
func isAlnum(c byte) bool { return class[c]&clAlnum != 0 }
func isUpperAlnum(c byte) bool {
	return class[c]&(clDigit|clUpper) != 0
}
func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 32
	}
	return c
}

// ---- word-at-a-time skipping (SWAR) ----

const (
	ones = 0x0101010101010101
	lo7  = 0x7f7f7f7f7f7f7f7f
	high = 0x8080808080808080
)

func load64(b []byte, i int) uint64 { return binary.LittleEndian.Uint64(b[i:]) }

// zeroMask has the high bit set in the lowest zero byte of x (bytes above it may be
// marked too, so only its lowest set bit is exact).
func zeroMask(x uint64) uint64 { return (x - ones) &^ x & high }

func hasZero(x uint64) bool { return zeroMask(x) != 0 }

// digitMask has the high bit set in exactly the bytes of x that are ASCII digits:
// below 0x80 and 0x2f < byte < 0x3a ("hasbetween" from Bit Twiddling Hacks; no byte
// borrows from or carries into its neighbour, so every byte is exact).
func digitMask(x uint64) uint64 {
	const m, n = 0x2f, 0x3a
	return (ones*(127+n) - (x & lo7)) &^ x & ((x & lo7) + ones*(127-m)) & high
}

func hasDigit(x uint64) bool { return digitMask(x) != 0 }

// nextDigit returns the index of the first digit at or after i, or len(b).
func nextDigit(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if m := digitMask(load64(b, i)); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(b) && !isDigit(b[i]) {
		i++
	}
	return i
}

// nextTokenMark returns the index of the first '_', '-' or 'A' at or after i (every
// token prefix ends in '_' or '-', or starts with "AIza"), or len(b).
func nextTokenMark(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		x := load64(b, i)
		if m := zeroMask(x^(ones*'_')) | zeroMask(x^(ones*'-')) | zeroMask(x^(ones*'A')); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(b) && b[i] != '_' && b[i] != '-' && b[i] != 'A' {
		i++
	}
	return i
}

// ---- credit cards ----

// findCard finds 13–19 digits, optionally grouped by single spaces or dashes, that are
// Luhn-valid and start with a known issuer prefix. The digits must not be glued to
// other digits: a window starts at the start of a digit run or right after a
// separator and ends at the end of the run or right before a separator.
func findCard(b []byte, from int) (int, int, bool) {
	n := len(b)
	i := from
	for i > 0 && i < n && isDigit(b[i-1]) && isDigit(b[i]) { // inside a run that began before from
		i++
	}
	for {
		i = nextDigit(b, i)
		if i >= n {
			return 0, 0, false
		}
		// b[i] starts a run of digits with single separators.
		runEnd, nd := i, 0
		for runEnd < n {
			c := b[runEnd]
			if isDigit(c) {
				runEnd++
				nd++
				continue
			}
			if (c == ' ' || c == '-') && runEnd+1 < n && isDigit(b[runEnd+1]) {
				runEnd++
				continue
			}
			break
		}
		if nd >= 13 {
			// Try every group start in the run, longest window first.
			for s := i; s < runEnd; s++ {
				if s > i && (isDigit(b[s-1]) || !isDigit(b[s])) {
					continue
				}
				if e, ok := cardAt(b[:runEnd], s); ok {
					return s, e, true
				}
			}
		}
		i = runEnd
	}
}

// cardAt tries the windows starting at s that end at a group end, longest first.
func cardAt(b []byte, s int) (int, bool) {
	var d [19]byte
	var ends [19]int
	nd := 0
	for j := s; j < len(b) && nd < 19; j++ {
		c := b[j]
		if !isDigit(c) {
			continue
		}
		d[nd] = c - '0'
		nd++
		if j+1 == len(b) || !isDigit(b[j+1]) {
			ends[nd-1] = j + 1
		} else {
			ends[nd-1] = 0
		}
	}
	if nd < 13 || !iinOK(d[:nd]) {
		return 0, false
	}
	for k := nd; k >= 13; k-- {
		if ends[k-1] != 0 && luhn(d[:k]) {
			return ends[k-1], true
		}
	}
	return 0, false
}

func iinOK(d []byte) bool {
	switch d[0] {
	case 4, 5, 6: // Visa; Mastercard 51-55 and Maestro 50, 56-59; Discover, UnionPay, Maestro 6x
		return true
	case 3: // Diners 30, 36, 38, 39; Amex 34, 37; JCB 35
		return d[1] == 0 || d[1] >= 4
	case 2: // Mastercard 2221-2720
		p := int(d[0])*1000 + int(d[1])*100 + int(d[2])*10 + int(d[3])
		return p >= 2221 && p <= 2720
	}
	return false
}

func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i])
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// ---- email ----

// findEmail finds local@domain.tld: a local part of [A-Za-z0-9._%+-], a domain of
// at least two labels of [A-Za-z0-9-] and an alphabetic top-level label of two or more.
func findEmail(b []byte, from int) (int, int, bool) {
	for from < len(b) {
		k := bytes.IndexByte(b[from:], '@')
		if k < 0 {
			return 0, 0, false
		}
		at := from + k
		s := at
		for s > 0 && class[b[s-1]]&(clAlnum|clLocal) != 0 {
			s--
		}
		if s < at {
			if e, ok := emailDomainEnd(b, at+1); ok {
				return s, e, true
			}
		}
		from = at + 1
	}
	return 0, 0, false
}

func emailDomainEnd(b []byte, d int) (int, bool) {
	e := d
	for e < len(b) && (class[b[e]]&(clAlnum|clDomain) != 0 || b[e] == '.') {
		e++
	}
	for e > d {
		for e > d && (b[e-1] == '.' || b[e-1] == '-') {
			e--
		}
		dot := bytes.LastIndexByte(b[d:e], '.')
		if dot <= 0 {
			return 0, false
		}
		dot += d
		tld := b[dot+1 : e]
		alpha := len(tld) >= 2
		for _, c := range tld {
			if class[c]&(clUpper|clLower) == 0 {
				alpha = false
				break
			}
		}
		if alpha && b[dot-1] != '.' {
			return e, true
		}
		e = dot
	}
	return 0, false
}

// ---- US social security numbers ----

// findSSN finds AAA-GG-SSSS or AAA GG SSSS (one separator used twice), not glued to
// other digits, rejecting area 000, 666 and 900–999, group 00 and serial 0000.
func findSSN(b []byte, from int) (int, int, bool) {
	n := len(b)
	i := from
	for i > 0 && i < n && isDigit(b[i-1]) && isDigit(b[i]) {
		i++
	}
	for {
		i = nextDigit(b, i)
		if i+11 > n {
			return 0, 0, false
		}
		j := i + 1
		for j < n && isDigit(b[j]) {
			j++
		}
		if j-i == 3 && ssnAt(b, i) {
			return i, i + 11, true
		}
		i = j
	}
}

// ssnAt checks AAA?GG?SSSS at i, where b[i:i+3] are digits not preceded by one.
func ssnAt(b []byte, i int) bool {
	sep := b[i+3]
	if sep != '-' && sep != ' ' || b[i+6] != sep || !isDigit(b[i+4]) || !isDigit(b[i+5]) ||
		!isDigit(b[i+7]) || !isDigit(b[i+8]) || !isDigit(b[i+9]) || !isDigit(b[i+10]) {
		return false
	}
	if i+11 < len(b) && isDigit(b[i+11]) {
		return false
	}
	area := int(b[i]-'0')*100 + int(b[i+1]-'0')*10 + int(b[i+2]-'0')
	if area == 0 || area == 666 || area >= 900 {
		return false
	}
	if b[i+4] == '0' && b[i+5] == '0' {
		return false
	}
	return !(b[i+7] == '0' && b[i+8] == '0' && b[i+9] == '0' && b[i+10] == '0')
}

// ---- IBAN ----

// ibanLen is the IBAN length per country (SWIFT IBAN registry).
var ibanLen = map[[2]byte]int{
	{'A', 'D'}: 24, {'A', 'E'}: 23, {'A', 'L'}: 28, {'A', 'T'}: 20, {'A', 'Z'}: 28, {'B', 'A'}: 20,
	{'B', 'E'}: 16, {'B', 'G'}: 22, {'B', 'H'}: 22, {'B', 'I'}: 27, {'B', 'R'}: 29, {'B', 'Y'}: 28,
	{'C', 'H'}: 21, {'C', 'R'}: 22, {'C', 'Y'}: 28, {'C', 'Z'}: 24, {'D', 'E'}: 22, {'D', 'J'}: 27,
	{'D', 'K'}: 18, {'D', 'O'}: 28, {'E', 'E'}: 20, {'E', 'G'}: 29, {'E', 'S'}: 24, {'F', 'I'}: 18,
	{'F', 'K'}: 18, {'F', 'O'}: 18, {'F', 'R'}: 27, {'G', 'B'}: 22, {'G', 'E'}: 22, {'G', 'I'}: 23,
	{'G', 'L'}: 18, {'G', 'R'}: 27, {'G', 'T'}: 28, {'H', 'R'}: 21, {'H', 'U'}: 28, {'I', 'E'}: 22,
	{'I', 'L'}: 23, {'I', 'Q'}: 23, {'I', 'S'}: 26, {'I', 'T'}: 27, {'J', 'O'}: 30, {'K', 'W'}: 30,
	{'K', 'Z'}: 20, {'L', 'B'}: 28, {'L', 'C'}: 32, {'L', 'I'}: 21, {'L', 'T'}: 20, {'L', 'U'}: 20,
	{'L', 'V'}: 21, {'L', 'Y'}: 25, {'M', 'C'}: 27, {'M', 'D'}: 24, {'M', 'E'}: 22, {'M', 'K'}: 19,
	{'M', 'N'}: 20, {'M', 'R'}: 27, {'M', 'T'}: 31, {'M', 'U'}: 30, {'N', 'I'}: 28, {'N', 'L'}: 18,
	{'N', 'O'}: 15, {'O', 'M'}: 23, {'P', 'K'}: 24, {'P', 'L'}: 28, {'P', 'S'}: 29, {'P', 'T'}: 25,
	{'Q', 'A'}: 29, {'R', 'O'}: 24, {'R', 'S'}: 22, {'R', 'U'}: 33, {'S', 'A'}: 24, {'S', 'C'}: 31,
	{'S', 'D'}: 18, {'S', 'E'}: 24, {'S', 'I'}: 19, {'S', 'K'}: 24, {'S', 'M'}: 27, {'S', 'O'}: 23,
	{'S', 'T'}: 25, {'S', 'V'}: 28, {'T', 'L'}: 23, {'T', 'N'}: 24, {'T', 'R'}: 26, {'U', 'A'}: 29,
	{'V', 'A'}: 22, {'V', 'G'}: 24, {'X', 'K'}: 20,
}

// findIBAN finds a country code, two check digits and the country's number of
// alphanumerics (optionally grouped by single spaces) whose ISO 7064 mod-97 is 1.
// Letters may be of either case.
func findIBAN(b []byte, from int) (int, int, bool) {
	n := len(b)
	i := from
	for {
		// The check digits start a digit run right after the two-letter country code.
		i = nextDigit(b, i)
		if i+13 > n {
			return 0, 0, false
		}
		j := i + 1
		for j < n && isDigit(b[j]) {
			j++
		}
		if j-i >= 2 && i >= from+2 && class[b[i-1]]&(clUpper|clLower) != 0 && class[b[i-2]]&(clUpper|clLower) != 0 &&
			(i == 2 || !isAlnum(b[i-3])) {
			if want, ok := ibanLen[[2]byte{upper(b[i-2]), upper(b[i-1])}]; ok {
				if e, ok := ibanAt(b, i-2, want); ok {
					return i - 2, e, true
				}
			}
		}
		i = j
	}
}

func ibanAt(b []byte, s, want int) (int, bool) {
	var chars [34]byte
	nc := 0
	j := s
	for j < len(b) && nc < want {
		c := b[j]
		if isAlnum(c) {
			chars[nc] = upper(c)
			nc++
			j++
			continue
		}
		if c == ' ' && nc >= 4 && j+1 < len(b) && isAlnum(b[j+1]) {
			j++
			continue
		}
		break
	}
	if nc != want || j < len(b) && isAlnum(b[j]) {
		return 0, false
	}
	rem := 0
	for k := 0; k < nc; k++ {
		c := chars[(k+4)%nc]
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	return j, rem == 1
}

// ---- AWS ----

// findAWSAccessKey finds an access key id: AKIA (long-term), ASIA (temporary), ABIA or
// ACCA followed by 16 upper-case letters or digits, not followed by another one.
func findAWSAccessKey(b []byte, from int) (int, int, bool) {
	for from+20 <= len(b) {
		k := bytes.IndexByte(b[from:], 'A')
		if k < 0 {
			return 0, 0, false
		}
		i := from + k
		from = i + 1
		if i+20 > len(b) {
			return 0, 0, false
		}
		p := b[i+1 : i+4]
		if !(p[0] == 'K' && p[1] == 'I' && p[2] == 'A' || p[0] == 'S' && p[1] == 'I' && p[2] == 'A' ||
			p[0] == 'B' && p[1] == 'I' && p[2] == 'A' || p[0] == 'C' && p[1] == 'C' && p[2] == 'A') {
			continue
		}
		ok := true
		for _, c := range b[i+4 : i+20] {
			if !isUpperAlnum(c) {
				ok = false
				break
			}
		}
		if ok && (i+20 == len(b) || !isUpperAlnum(b[i+20])) {
			return i, i + 20, true
		}
	}
	return 0, 0, false
}

// findAWSSecretKey finds a secret access key: exactly 40 characters of
// [A-Za-z0-9+/] bounded by other characters, that either follow a hint ("aws" or
// "secret", any case, within the 64 bytes before) or, alone, look random: they mix
// upper and lower case and use at least 20 distinct characters (a random 40-character
// key does so with probability > 0.999; hex digests such as git hashes never do).
func findAWSSecretKey(b []byte, from int) (int, int, bool) {
	const k = 40
	in := func(c byte) bool { return class[c]&(clAlnum|clB64) != 0 }
	n := len(b)
	i := from
	for i > 0 && i < n && in(b[i-1]) { // inside a run that began before from
		i++
	}
	// Invariant: i == 0 or b[i-1] is outside the alphabet. A run of exactly k that
	// starts in [i, i+k-1] covers i+k-1, so when that byte is outside the alphabet
	// the whole window is skipped at once.
	for i+k <= n {
		p := i + k - 1
		if !in(b[p]) {
			i = p + 1
			continue
		}
		s := p
		for s > i && in(b[s-1]) {
			s--
		}
		e := p + 1
		for e < n && in(b[e]) {
			e++
		}
		if e-s == k && (hinted(b, s) || randomLooking(b[s:e])) {
			return s, e, true
		}
		i = e + 1
	}
	return 0, 0, false
}

func hinted(b []byte, s int) bool {
	lo := s - 64
	if lo < 0 {
		lo = 0
	}
	w := b[lo:s]
	for j := 0; j+3 <= len(w); j++ {
		c := w[j] | 0x20
		if c == 'a' && w[j+1]|0x20 == 'w' && w[j+2]|0x20 == 's' {
			return true
		}
		if c == 's' && j+6 <= len(w) && w[j+1]|0x20 == 'e' && w[j+2]|0x20 == 'c' && w[j+3]|0x20 == 'r' && w[j+4]|0x20 == 'e' && w[j+5]|0x20 == 't' {
			return true
		}
	}
	return false
}

func randomLooking(v []byte) bool {
	var seen [256]bool
	distinct := 0
	var up, low bool
	for _, c := range v {
		if !seen[c] {
			seen[c] = true
			distinct++
		}
		up = up || class[c]&clUpper != 0
		low = low || class[c]&clLower != 0
	}
	return up && low && distinct >= 20
}

// ---- JWT ----

// findJWT finds header.payload.signature in base64url where the header starts "eyJ"
// (base64 of `{"`), is at least 10 characters, the payload at least 2, and the
// signature may be empty (unsigned tokens still carry claims).
func findJWT(b []byte, from int) (int, int, bool) {
	for from+2 < len(b) {
		// 'J' is rare in text, so IndexByte (SIMD) skips far; "ey" is checked after.
		k := bytes.IndexByte(b[from+2:], 'J')
		if k < 0 {
			return 0, 0, false
		}
		s := from + k
		from = s + 1
		if b[s] != 'e' || b[s+1] != 'y' {
			continue
		}
		h := b64urlRun(b, s)
		if h-s < 10 || h >= len(b) || b[h] != '.' {
			continue
		}
		p := b64urlRun(b, h+1)
		if p-(h+1) < 2 || p >= len(b) || b[p] != '.' {
			continue
		}
		return s, b64urlRun(b, p+1), true
	}
	return 0, 0, false
}

func b64urlRun(b []byte, i int) int {
	for i < len(b) && class[b[i]]&(clAlnum|clURL) != 0 {
		i++
	}
	return i
}

// ---- PEM private keys ----

// findPEMPrivateKey finds the body of a "-----BEGIN ... PRIVATE KEY-----" block (also
// "PRIVATE KEY BLOCK" for PGP) up to its END line; without an END line the rest of the
// text is the body, so a truncated key is masked too.
func findPEMPrivateKey(b []byte, from int) (int, int, bool) {
	const begin = "-----BEGIN "
	const anchor = 7 // begin[anchor] == 'G', the rarest byte of it in ordinary text
	for from+len(begin) <= len(b) {
		k := bytes.IndexByte(b[from+anchor:], 'G')
		if k < 0 {
			return 0, 0, false
		}
		s := from + k
		from = s + 1
		if s+len(begin) > len(b) || string(b[s:s+len(begin)]) != begin {
			continue
		}
		lbl := s + len(begin)
		end := bytes.Index(b[lbl:min(len(b), lbl+80)], []byte("-----"))
		if end < 0 || !bytes.Contains(b[lbl:lbl+end], []byte("PRIVATE KEY")) {
			continue
		}
		body := lbl + end + 5
		stop := bytes.Index(b[body:], []byte("-----END "))
		if stop < 0 {
			return body, len(b), body < len(b)
		}
		if stop == 0 {
			continue
		}
		return body, body + stop, true
	}
	return 0, 0, false
}

// ---- token prefixes ----

type tokenPrefix struct {
	prefix  string
	minBody int
	body    uint8 // class bits allowed in the body
}

// tokenPrefixes are vendor token formats whose prefix makes them unambiguous.
var tokenPrefixes = []tokenPrefix{
	{"ghp_", 30, clAlnum}, {"gho_", 30, clAlnum}, {"ghu_", 30, clAlnum}, {"ghs_", 30, clAlnum}, {"ghr_", 30, clAlnum},
	{"github_pat_", 30, clAlnum | clURL},
	{"xoxb-", 10, clAlnum | clURL}, {"xoxp-", 10, clAlnum | clURL}, {"xoxa-", 10, clAlnum | clURL},
	{"xoxr-", 10, clAlnum | clURL}, {"xoxs-", 10, clAlnum | clURL}, {"xoxe-", 10, clAlnum | clURL},
	{"xapp-", 10, clAlnum | clURL},
	{"sk_live_", 10, clAlnum}, {"rk_live_", 10, clAlnum}, {"sk_test_", 10, clAlnum}, {"rk_test_", 10, clAlnum},
	{"glpat-", 20, clAlnum | clURL},
	{"npm_", 36, clAlnum},
	{"sk-ant-", 20, clAlnum | clURL}, {"sk-proj-", 20, clAlnum | clURL},
	{"pypi-", 50, clAlnum | clURL},
	{"AIza", 30, clAlnum | clURL},
}

// findTokenPrefix finds a known token prefix followed by enough body characters. The
// match is the body: the prefix stays visible, so a reader knows what was removed.
func findTokenPrefix(b []byte, from int) (int, int, bool) {
	for i := from; ; i++ {
		i = nextTokenMark(b, i)
		if i >= len(b) {
			return 0, 0, false
		}
		c := b[i]
		for _, tp := range tokenPrefixes {
			p := tp.prefix
			var s int
			if c == 'A' {
				if p[0] != 'A' {
					continue
				}
				s = i
			} else {
				if p[len(p)-1] != c {
					continue
				}
				s = i + 1 - len(p)
			}
			if s < 0 || s+len(p) > len(b) || string(b[s:s+len(p)]) != p {
				continue
			}
			e := s + len(p)
			for e < len(b) && class[b[e]]&tp.body != 0 {
				e++
			}
			if e-(s+len(p)) >= tp.minBody {
				return s + len(p), e, true
			}
		}
	}
}
