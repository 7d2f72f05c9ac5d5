package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/jitgate/jitgate/broker/httpapi"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func printResult(w io.Writer, format, grantID string, res *httpapi.RunResponse) error {
	r := res.Result
	if r == nil {
		r = &spec.Result{}
	}
	switch format {
	case "json":
		rows := make([]map[string]*string, 0, len(r.Rows))
		for _, row := range r.Rows {
			m := make(map[string]*string, len(r.Columns))
			for i, c := range r.Columns {
				if i < len(row) {
					m[c] = row[i]
				}
			}
			rows = append(rows, m)
		}
		printJSON(w, map[string]any{"grant": grantID, "columns": r.Columns, "rows": rows, "tag": r.Tag, "output": r.Output,
			"notices": r.Notices, "recording": res.Recording})
	case "csv":
		cw := csv.NewWriter(w)
		if len(r.Columns) > 0 {
			_ = cw.Write(r.Columns)
		}
		for _, row := range r.Rows {
			rec := make([]string, len(row))
			for i, v := range row {
				if v != nil {
					rec[i] = *v
				}
			}
			_ = cw.Write(rec)
		}
		cw.Flush()
		return cw.Error()
	default:
		if len(r.Columns) == 0 && (r.Output != "" || strings.HasPrefix(r.Tag, "exit ") || strings.HasPrefix(r.Tag, "signal ") || strings.HasPrefix(r.Tag, "HTTP ")) {
			// A shell command: its (masked) output as it came, stderr after it.
			fmt.Fprint(w, r.Output)
			if strings.HasPrefix(r.Tag, "HTTP ") {
				fmt.Fprintln(os.Stderr, r.Tag)
				return nil
			}
			for _, n := range r.Notices {
				fmt.Fprint(os.Stderr, n)
			}
			if r.Truncated {
				fmt.Fprintln(os.Stderr, "jitgate: output truncated at the proxy's limit")
			}
			return nil
		}
		writeTable(w, r.Columns, r.Rows)
		for _, n := range r.Notices {
			fmt.Fprintln(w, "NOTICE:", n)
		}
		if r.Tag != "" {
			fmt.Fprintln(w, r.Tag)
		}
	}
	return nil
}

// writeTable prints rows like psql's aligned format; NULL prints as empty.
func writeTable(w io.Writer, cols []string, rows [][]*string) {
	if len(cols) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug&0)
	fmt.Fprintln(tw, strings.Join(cols, "\t| "))
	seps := make([]string, len(cols))
	for i, c := range cols {
		width := utf8.RuneCountInString(c)
		for _, row := range rows {
			if i < len(row) && row[i] != nil {
				width = max(width, utf8.RuneCountInString(*row[i]))
			}
		}
		seps[i] = strings.Repeat("-", width)
	}
	fmt.Fprintln(tw, strings.Join(seps, "\t+-"))
	for _, row := range rows {
		cells := make([]string, len(cols))
		for i := range cols {
			if i < len(row) && row[i] != nil {
				cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(*row[i])
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t| "))
	}
	tw.Flush()
	fmt.Fprintf(w, "(%d row%s)\n", len(rows), plural(len(rows)))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
