package approvalui

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/grant"
)

// maxReason matches the broker's limit on a request's reason.
const maxReason = 2000

type pages struct {
	index, detail, message *template.Template
}

func parsePages() (*pages, error) {
	parse := func(name string) (*template.Template, error) {
		t, err := template.New("layout.html").ParseFS(assets, "templates/layout.html", "templates/grant.html", "templates/"+name)
		if err != nil {
			return nil, fmt.Errorf("approvalui: template %s: %w", name, err)
		}
		return t, nil
	}
	var p pages
	var err error
	if p.index, err = parse("index.html"); err != nil {
		return nil, err
	}
	if p.detail, err = parse("detail.html"); err != nil {
		return nil, err
	}
	if p.message, err = parse("message.html"); err != nil {
		return nil, err
	}
	return &p, nil
}

// pageData is what every page template gets.
type pageData struct {
	Title string
	Base  string
	// Who and CSRF are set when someone is signed in.
	Who  *whoView
	CSRF string
	// Message is the text of the message page; Flash a result shown above a grant.
	Message string
	Flash   *flash
	Mine    []grantView
	Theirs  []grantView
	Grant   *grantView
	// Login is a sign-in link for message pages shown to signed-out visitors.
	Login string
}

type flash struct {
	OK   bool
	Text string
}

type whoView struct {
	Name, Key string
	Groups    []string
}

// grantView is a grant as an approver needs to judge it.
type grantView struct {
	ID, State, Mode, Target, Access, TTL string
	RequesterName, Requester             string
	Reason                               string
	Operation, OperationHash             string
	Statements                           []grant.StatementInfo
	PRURL, PRLabel                       string
	Repository, Ref                      string
	Commit, CommitURL                    string
	Claims                               []claimView
	Rule                                 string
	PolicyReasons                        []string
	Created                              string
	PendingUntil                         string
	ApproverGroups, ApproverUsers        []string
	Quorum, Approved                     int
	Approvals                            []approvalView
	Error                                string
	// Estimate is PostgreSQL's row estimate for a write ("" when the rule
	// did not ask for one); CoversNext and CoveredBy describe approvals that
	// cover later identical statements.
	Estimate   string
	CoversNext int
	CoveredBy  string
	// Own: the viewer requested it. CanDecide: pending, not own, not yet
	// decided by the viewer. The Service enforces both anyway.
	Own, CanDecide bool
	DecidedByYou   string
	// Replay links to the grant's recording once one exists.
	Replay string
}

type claimView struct{ Key, Value string }

type approvalView struct{ Name, Decision, Reason, At string }

var (
	repoRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$`)
	prRefRE  = regexp.MustCompile(`^refs/pull/([0-9]{1,10})/(?:merge|head)$`)
	commitRE = regexp.MustCompile(`^[0-9a-f]{7,64}$`)
)

// pullRequest derives the pull request link from GitHub Actions claims
// (repository "org/repo", ref "refs/pull/N/merge"). Claims that do not have
// that exact shape give no link: they are shown as text only.
func pullRequest(claims map[string]any) (link, label string) {
	repo, _ := claims["repository"].(string)
	ref, _ := claims["ref"].(string)
	m := prRefRE.FindStringSubmatch(ref)
	if !repoRE.MatchString(repo) || m == nil {
		return "", ""
	}
	return "https://github.com/" + repo + "/pull/" + m[1], repo + "#" + m[1]
}

func commitOf(claims map[string]any) (sha, link string) {
	sha, _ = claims["sha"].(string)
	repo, _ := claims["repository"].(string)
	if commitRE.MatchString(sha) && repoRE.MatchString(repo) {
		link = "https://github.com/" + repo + "/commit/" + sha
	}
	return sha, link
}

func (u *ui) when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	s := t.UTC().Format("2006-01-02 15:04:05 UTC")
	d := t.Sub(u.cfg.Now()).Round(time.Second)
	switch {
	case d > 0:
		s += " (in " + d.String() + ")"
	case d < 0:
		s += " (" + (-d).String() + " ago)"
	}
	return s
}

func (u *ui) view(g *grant.Grant, s *session) grantView {
	v := grantView{
		ID: g.ID, State: g.State.String(), Mode: g.Mode.String(), Target: g.Target, Access: g.Access.String(),
		RequesterName: g.RequesterName, Requester: g.Requester, Reason: g.Reason,
		Operation: g.Operation, OperationHash: g.OperationHash, Statements: g.Statements,
		Rule: g.Rule, PolicyReasons: g.Reasons, Created: u.when(g.CreatedAt), PendingUntil: u.when(g.PendingUntil),
		ApproverGroups: g.ApproversGroups, ApproverUsers: g.ApproversUsers, Quorum: max(g.Quorum, 1), Error: g.Error,
		Own: g.Requester == s.who.Key(),
	}
	if g.TTL > 0 {
		v.TTL = g.TTL.String()
	}
	switch {
	case g.EstimatedRows < 0:
		v.Estimate = "unknown (EXPLAIN failed)"
	case g.EstimatedRows > 0:
		v.Estimate = fmt.Sprintf("about %.0f rows (EXPLAIN, not executed)", g.EstimatedRows)
	}
	v.CoversNext, v.CoveredBy = g.CoversNext, g.CoveredBy
	v.PRURL, v.PRLabel = pullRequest(g.Claims)
	v.Repository, _ = g.Claims["repository"].(string)
	v.Ref, _ = g.Claims["ref"].(string)
	v.Commit, v.CommitURL = commitOf(g.Claims)
	for k, c := range g.Claims {
		v.Claims = append(v.Claims, claimView{k, fmt.Sprint(c)})
	}
	sort.Slice(v.Claims, func(i, j int) bool { return v.Claims[i].Key < v.Claims[j].Key })
	for _, a := range g.Approvals {
		if a.Decision == "approve" {
			v.Approved++
		}
		if a.By == s.who.Key() {
			v.DecidedByYou = a.Decision
		}
		v.Approvals = append(v.Approvals, approvalView{Name: firstNonEmpty(a.Name, a.By), Decision: a.Decision, Reason: a.Reason, At: u.when(a.At)})
	}
	v.CanDecide = g.State == grant.Pending && !v.Own && v.DecidedByYou == ""
	v.Replay = u.replayLink(g)
	return v
}

func (u *ui) data(s *session, title string) pageData {
	d := pageData{Title: title, Base: u.base}
	if s != nil {
		d.Who = &whoView{Name: displayName(s), Key: s.who.Key(), Groups: s.who.Groups}
		d.CSRF = s.csrf
	}
	return d
}

func displayName(s *session) string {
	for _, k := range []string{"email", "preferred_username", "name"} {
		if v, ok := s.who.Claims[k].(string); ok && v != "" {
			return v
		}
	}
	return s.who.Subject
}

func (u *ui) index(w http.ResponseWriter, r *http.Request, s *session) {
	pending := grant.Pending
	gs, err := u.cfg.Service.List(r.Context(), s.who, grant.Filter{State: &pending})
	if err != nil {
		u.fail(w, r, s, err)
		return
	}
	// Service.List returns the viewer's own grants and the ones they may
	// approve: everything not their own is theirs to decide.
	sort.Slice(gs, func(i, j int) bool { return gs[i].CreatedAt.Before(gs[j].CreatedAt) })
	d := u.data(s, "Pending requests")
	for _, g := range gs {
		v := u.view(g, s)
		if v.Own {
			d.Mine = append(d.Mine, v)
		} else {
			d.Theirs = append(d.Theirs, v)
		}
	}
	u.render(w, r, http.StatusOK, u.pages.index, d)
}

func (u *ui) load(w http.ResponseWriter, r *http.Request, s *session) (*grant.Grant, bool) {
	id := r.PathValue("id")
	if !grant.ValidID(id) {
		u.errorPage(w, r, s, http.StatusNotFound, "There is no such grant.")
		return nil, false
	}
	g, err := u.cfg.Service.Get(r.Context(), s.who, id)
	if err != nil {
		u.fail(w, r, s, err)
		return nil, false
	}
	return g, true
}

func (u *ui) detail(w http.ResponseWriter, r *http.Request, s *session) {
	g, ok := u.load(w, r, s)
	if !ok {
		return
	}
	u.showGrant(w, r, s, http.StatusOK, g, nil)
}

func (u *ui) showGrant(w http.ResponseWriter, r *http.Request, s *session, status int, g *grant.Grant, f *flash) {
	d := u.data(s, "Grant "+g.ID)
	v := u.view(g, s)
	d.Grant, d.Flash = &v, f
	u.render(w, r, status, u.pages.detail, d)
}

func (u *ui) approve(w http.ResponseWriter, r *http.Request, s *session) {
	u.decide(w, r, s, true)
}

func (u *ui) deny(w http.ResponseWriter, r *http.Request, s *session) {
	u.decide(w, r, s, false)
}

func (u *ui) decide(w http.ResponseWriter, r *http.Request, s *session, approve bool) {
	id := r.PathValue("id")
	if !grant.ValidID(id) {
		u.errorPage(w, r, s, http.StatusNotFound, "There is no such grant.")
		return
	}
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	var bad string
	switch {
	case len(reason) > maxReason:
		bad = fmt.Sprintf("The reason is longer than %d characters; nothing was changed.", maxReason)
	case !approve && reason == "":
		bad = "A denial needs a reason; nothing was changed."
	}
	if bad != "" {
		if g, ok := u.load(w, r, s); ok {
			u.showGrant(w, r, s, http.StatusBadRequest, g, &flash{Text: bad})
		}
		return
	}
	var (
		g   *grant.Grant
		err error
	)
	if approve {
		g, err = u.cfg.Service.Approve(r.Context(), s.who, id, reason)
	} else {
		g, err = u.cfg.Service.Deny(r.Context(), s.who, id, reason)
	}
	if err != nil {
		status, msg := classify(err)
		u.cfg.Logger.Warn("approvalui: decision refused", "grant", id, "who", s.who.String(), "approve", approve, "err", err)
		if status == http.StatusInternalServerError {
			u.fail(w, r, s, err)
			return
		}
		// Show the grant with the refusal when the viewer may still see it.
		if cur, gerr := u.cfg.Service.Get(r.Context(), s.who, id); gerr == nil {
			u.showGrant(w, r, s, status, cur, &flash{Text: "Refused: " + msg})
			return
		}
		u.errorPage(w, r, s, status, "Refused: "+msg)
		return
	}
	var text string
	switch {
	case !approve:
		text = "You denied this grant. The requester will be told it was denied."
	case g.State == grant.Approved:
		text = "You approved this grant. The requester's waiting command carries on."
	default:
		n := 0
		for _, a := range g.Approvals {
			if a.Decision == "approve" {
				n++
			}
		}
		text = fmt.Sprintf("Your approval is recorded: %d of %d needed. The grant stays pending until the quorum is reached.", n, max(g.Quorum, 1))
	}
	u.cfg.Logger.Info("approvalui: decision", "grant", g.ID, "who", s.who.String(), "approve", approve, "state", g.State.String())
	u.showGrant(w, r, s, http.StatusOK, g, &flash{OK: true, Text: text})
}

// classify maps the Service's errors to a status and a message for the page.
func classify(err error) (int, string) {
	msg := err.Error()
	switch {
	case errors.Is(err, broker.ErrBadRequest):
		return http.StatusBadRequest, msg
	case errors.Is(err, broker.ErrNotFound):
		return http.StatusNotFound, "there is no such grant"
	case errors.Is(err, broker.ErrForbidden):
		return http.StatusForbidden, msg
	case errors.Is(err, broker.ErrGrantExpired):
		return http.StatusGone, msg
	case errors.Is(err, broker.ErrConflict):
		return http.StatusConflict, msg
	case errors.Is(err, broker.ErrUnavailable):
		return http.StatusServiceUnavailable, msg
	}
	return http.StatusInternalServerError, "internal error; see the broker log"
}

// fail shows an error from the Service (or this package) with its status.
func (u *ui) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	status, msg := classify(err)
	if status == http.StatusInternalServerError {
		u.cfg.Logger.Error("approvalui: internal error", "path", r.URL.Path, "err", err)
	}
	u.errorPage(w, r, s, status, msg)
}

func (u *ui) errorPage(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	d := u.data(s, fmt.Sprintf("%d %s", status, http.StatusText(status)))
	d.Message = msg
	if s == nil {
		d.Login = u.base + "/login"
	}
	u.render(w, r, status, u.pages.message, d)
}

func (u *ui) render(w http.ResponseWriter, r *http.Request, status int, t *template.Template, d pageData) {
	if d.Base == "" {
		d.Base = u.base
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		u.cfg.Logger.Error("approvalui: render", "path", r.URL.Path, "err", err)
		http.Error(w, "internal error; see the broker log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func firstNonEmpty(a ...string) string {
	for _, s := range a {
		if s != "" {
			return s
		}
	}
	return ""
}
