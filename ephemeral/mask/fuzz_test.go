package mask_test

import (
	"bytes"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/mask"
)

// plant builds a secret of kind k from seed bytes: a Luhn-valid Visa number (plain or
// grouped), an email address, an AWS access key id or a JWT.
func plant(k uint8, seed []byte) (secret []byte, core []byte) {
	at := func(i int) byte {
		if len(seed) == 0 {
			return byte(i * 7)
		}
		return seed[i%len(seed)] + byte(i)
	}
	switch k % 5 {
	case 0, 1: // card, plain or grouped by spaces
		d := make([]byte, 16)
		d[0] = 4
		for i := 1; i < 15; i++ {
			d[i] = at(i) % 10
		}
		sum := 0
		for i := 14; i >= 0; i-- {
			v := int(d[i])
			if (14-i)%2 == 0 {
				v *= 2
				if v > 9 {
					v -= 9
				}
			}
			sum += v
		}
		d[15] = byte((10 - sum%10) % 10)
		digits := make([]byte, 16)
		for i := range d {
			digits[i] = '0' + d[i]
		}
		if k%5 == 0 {
			return digits, digits[:12]
		}
		g := []byte{}
		for i := 0; i < 16; i += 4 {
			if i > 0 {
				g = append(g, ' ')
			}
			g = append(g, digits[i:i+4]...)
		}
		return g, g[:14] // the first three groups (partial style keeps the last 4 digits)
	case 2:
		const al = "abcdefghijklmnopqrstuvwxyz0123456789"
		local := make([]byte, 3+int(at(0))%10)
		for i := range local {
			local[i] = al[int(at(i+1))%len(al)]
		}
		e := append(local, "@mail.example.com"...)
		return e, local
	case 3:
		const al = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
		key := []byte("AKIA")
		for i := 0; i < 16; i++ {
			key = append(key, al[int(at(i))%len(al)])
		}
		return key, key[4:]
	default:
		const al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		part := func(n, off int) []byte {
			p := make([]byte, n)
			for i := range p {
				p[i] = al[int(at(i+off))%len(al)]
			}
			return p
		}
		j := append([]byte("eyJ"), part(17, 0)...)
		j = append(j, '.')
		j = append(j, part(24, 50)...)
		j = append(j, '.')
		j = append(j, part(30, 90)...)
		return j, j[20:]
	}
}

// FuzzText: a planted card, email, AWS key id or JWT, delimited by newlines inside
// arbitrary bytes, never survives Text, in any style.
func FuzzText(f *testing.F) {
	f.Add([]byte("hello "), []byte(" world"), uint8(0), []byte("seed"), uint8(0))
	f.Add([]byte("4111 "), []byte(" 1111"), uint8(1), []byte{1, 2, 3}, uint8(1))
	f.Add([]byte("alice@"), []byte("@example.com"), uint8(2), []byte("x"), uint8(2))
	f.Add([]byte("AKIA"), []byte("AAAA"), uint8(3), []byte{}, uint8(0))
	f.Add([]byte("eyJ."), []byte(".eyJ"), uint8(4), []byte("jwt"), uint8(1))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----"), []byte("-----END RSA PRIVATE KEY-----"), uint8(0), []byte("k"), uint8(2))
	maskers := make([]*mask.Masker, 3)
	for i, st := range []mask.Style{mask.StyleFull, mask.StylePartial, mask.StyleToken} {
		m, err := mask.New(mask.Config{Detectors: []string{"all"}, Style: st, TokenKey: testKey})
		if err != nil {
			f.Fatal(err)
		}
		maskers[i] = m
	}
	f.Fuzz(func(t *testing.T, prefix, suffix []byte, kind uint8, seed []byte, style uint8) {
		secret, core := plant(kind, seed)
		in := make([]byte, 0, len(prefix)+len(secret)+len(suffix)+2)
		in = append(in, prefix...)
		in = append(in, '\n')
		in = append(in, secret...)
		in = append(in, '\n')
		in = append(in, suffix...)
		if !bytes.Contains(in, core) {
			t.Fatal("planting failed")
		}
		m := maskers[int(style)%len(maskers)]
		out := m.Text(in)
		if bytes.Contains(out, secret) {
			t.Fatalf("secret %q survived: %q", secret, out)
		}
		// The masked region must not contain the secret's core either (for the
		// partial style, a card keeps only its last 4 digits).
		i := bytes.Index(in, secret)
		region := out
		if len(out) == len(in) {
			region = out[i : i+len(secret)]
		}
		if bytes.Contains(region, core) {
			t.Fatalf("secret core %q survived: %q", core, region)
		}
	})
}

// FuzzAnalyze: any input either fails to parse or yields lineages the planner accepts;
// nothing panics.
func FuzzAnalyze(f *testing.F) {
	for _, s := range []string{
		"SELECT 1", "SELECT * FROM users u JOIN orders o USING (id)",
		"WITH RECURSIVE r(n) AS (SELECT 1 UNION SELECT n+1 FROM r) SELECT * FROM r",
		"UPDATE t SET a = b RETURNING *", "SELECT (x).* FROM (SELECT ROW(1,2) x) s",
		"SELECT xmltable.* FROM XMLTABLE('/r' PASSING '<r/>' COLUMNS a int)",
		"INSERT INTO t SELECT * FROM u ON CONFLICT (id) DO UPDATE SET a = excluded.a RETURNING a",
		"MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET a = u.a RETURNING *",
		"SELECT a.b.c.d, (a).b, t.* FROM t, LATERAL generate_series(1, t.n) g",
	} {
		f.Add(s)
	}
	m, err := mask.New(mask.Config{Columns: []string{"*.card"}, Detectors: []string{"all"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		lins, err := mask.Analyze(sql)
		if err != nil {
			return
		}
		for i := range lins {
			n := len(lins[i].Columns) + 1
			fields := make([]mask.Field, n)
			for j := range fields {
				fields[j] = mask.Field{Computed: true, TextLike: true}
			}
			p := m.Plan(fields, &lins[i])
			for j := range fields {
				_ = p.Action(j)
			}
		}
	})
}
