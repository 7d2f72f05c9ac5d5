package e2e

import (
	"net/http/httptest"

	"github.com/jitgate/jitgate/broker/identity/devissuer"
)

// startForeignIssuer starts an HTTPS issuer the policy does not list.
func startForeignIssuer() (*devissuer.Issuer, func(), error) {
	iss, err := devissuer.New(devissuer.Options{})
	if err != nil {
		return nil, nil, err
	}
	ts := httptest.NewTLSServer(iss.Handler())
	iss.SetURL(ts.URL)
	return iss, ts.Close, nil
}
