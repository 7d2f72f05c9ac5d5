package replayui

const pageHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>jitgate recording {{clean .Header.GrantID}}</title>
<style>{{css}}</style>
{{- if .Casts}}
<link rel="stylesheet" href="static/asciinema-player.css">
{{- end}}
</head>
<body>
<h1>Recording of grant {{clean .Header.GrantID}}</h1>
<table class="meta">
<tr><th>Identity</th><td>{{clean .Header.Identity}}</td></tr>
<tr><th>Target</th><td>{{clean .Header.Target}}</td></tr>
<tr><th>Rule</th><td>{{clean .Header.Rule}}</td></tr>
<tr><th>Mode</th><td>{{clean .Header.Mode}}</td></tr>
<tr><th>Started</th><td>{{date .Header.Started}}</td></tr>
{{- if .Header.LeaseID}}<tr><th>Credential lease</th><td>{{clean .Header.LeaseID}}</td></tr>{{end}}
{{- if .Header.Version}}<tr><th>jitgate</th><td>{{clean .Header.Version}}</td></tr>{{end}}
</table>
<p class="banner {{.Status}}" id="verification">{{.Summary}}</p>
{{- if .Casts}}
<h2>Terminal</h2>
{{- range .Casts}}
<section class="cast cast-{{.Status}}">
<h3>{{clean .Name}}</h3>
<p class="note">{{.Summary}}</p>
{{- if .URL}}
<div class="player" data-src="{{.URL}}"></div>
{{- end}}
</section>
{{- end}}
<h2>Events</h2>
{{- end}}
<table class="events">
<thead><tr><th>Time ({{.Location}})</th><th>Conn</th><th>Event</th></tr></thead>
<tbody>
{{- range .Events}}
<tr class="ev-{{.Type}}"><td class="t">{{time .Time}}</td><td>{{if .Conn}}{{.Conn}}{{end}}</td><td>
{{- if or (eq .Type "query") (eq .Type "parse")}}{{if .Tag}}<span class="note">{{clean .Tag}}</span> {{end}}<span class="sql">{{clean .Statement}}</span>
{{- else if eq .Type "bind"}}<span class="note">bind {{clean .Tag}}</span>
{{- else if eq .Type "execute"}}<span class="note">execute {{clean .Tag}}</span>
{{- else if eq .Type "verdict"}}{{if and .Allowed (not (deref .Allowed))}}<span class="blocked">BLOCKED: {{clean .Reason}}</span>{{else}}<span class="note">allowed{{if .Reason}}: {{clean .Reason}}{{end}}</span>{{end}}
{{- else if eq .Type "rows"}}{{$ev := .}}<table class="rows"><thead><tr>{{range .Columns}}<th>{{clean .}}</th>{{end}}</tr></thead><tbody>
{{- range .Rows}}{{$row := .}}<tr>{{range $i, $c := $ev.Columns}}{{with cell $row $i}}<td>{{clean (deref .)}}</td>{{else}}<td class="null">NULL</td>{{end}}{{end}}</tr>{{end}}
</tbody></table>{{if gt .RowCount (len .Rows)}}<span class="note">{{.RowCount}} rows in all; {{len .Rows}} recorded</span>{{end}}{{if .Trimmed}} <span class="note">(trimmed by the recorder's event size limit)</span>{{end}}
{{- else if eq .Type "result"}}{{clean .Tag}}{{if .Statement}} <span class="note">{{clean .Statement}}</span>{{end}}
{{- else if eq .Type "error"}}<span class="err">ERROR: {{clean .Error}}</span>
{{- else if eq .Type "notice"}}<span class="note">NOTICE{{if .Tag}} ({{clean .Tag}}){{end}}: {{if .Statement}}{{clean .Statement}} {{end}}{{clean .Error}}{{clean .Reason}}</span>
{{- else if eq .Type "truncated"}}<span class="blocked">TRUNCATED: {{clean .Reason}}</span>
{{- else if eq .Type "started"}}<span class="note">session started</span>
{{- else if eq .Type "ended"}}<span class="note">session ended</span>
{{- end}}</td></tr>
{{- end}}
</tbody>
</table>
{{if .Omitted}}<p class="note">{{.Omitted}} more events are not shown.</p>{{end}}
{{- if .Casts}}
<script src="static/asciinema-player.min.js"></script>
<script src="static/replay.js"></script>
{{- end}}
</body>
</html>
`
