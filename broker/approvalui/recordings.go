package approvalui

import (
	"context"
	"errors"
	"net/http"

	"github.com/jitgate/jitgate/broker/grant"
)

// Recordings serves the replay pages of grants' recordings below
// BaseURL + "/recordings/" (replayui.Handler is one): GET /<grant id>,
// GET /<grant id>/casts/<file> and the public GET /static/<file>, relative to
// that prefix. The page lets through only signed-in viewers who may see the
// grant (broker.Service.Get: its requester and its approvers), and the handler
// must check Authorized on every request that shows a recording.
type Recordings interface {
	http.Handler
	// Has reports whether a grant has a recording to show (the grant page
	// links to it only then).
	Has(grantID string) bool
}

type viewerKey struct{}

// viewer is what the page put into the context of a request it let through.
type viewer struct{ grantID string }

// ErrNotAuthorized is returned by Authorized for a request the approval page
// did not let through for that grant.
var ErrNotAuthorized = errors.New("approvalui: the request was not authorized by the approval page for this grant")

// Authorized reports whether the approval page authorized r to see grantID's
// recording: it signed in a viewer whom the Service lets see the grant. Use
// it as replayui.Config.Authorize when the replay handler is mounted only
// through Config.Recordings. The mark cannot be set from outside this package.
func Authorized(r *http.Request, grantID string) error {
	v, ok := r.Context().Value(viewerKey{}).(viewer)
	if !ok || v.grantID == "" || v.grantID != grantID {
		return ErrNotAuthorized
	}
	return nil
}

// mountRecordings adds the replay routes when Config.Recordings is set.
func (u *ui) mountRecordings(mux *http.ServeMux) {
	rec := u.cfg.Recordings
	if rec == nil {
		return
	}
	prefix := u.path + "/recordings"
	inner := http.StripPrefix(prefix, rec)
	mux.Handle("GET "+prefix+"/static/{file}", inner)
	show := u.signedIn(func(w http.ResponseWriter, r *http.Request, s *session) {
		g, ok := u.load(w, r, s) // the Service decides who may see the grant
		if !ok {
			return
		}
		u.cfg.Logger.Info("approvalui: replay", "grant", g.ID, "who", s.who.String(), "path", r.URL.Path)
		inner.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), viewerKey{}, viewer{grantID: g.ID})))
	})
	mux.HandleFunc("GET "+prefix+"/{id}", show)
	mux.HandleFunc("GET "+prefix+"/{id}/casts/{name}", show)
}

// replayLink is the grant page's link to the recording, or "".
func (u *ui) replayLink(g *grant.Grant) string {
	if u.cfg.Recordings == nil || !u.cfg.Recordings.Has(g.ID) {
		return ""
	}
	return u.base + "/recordings/" + g.ID
}
