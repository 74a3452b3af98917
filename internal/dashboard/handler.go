package dashboard

import (
	"net/http"
	"strings"

	"github.com/spread-grpc/spread/internal/frontend"
)

var _ Frontend = (*frontend.Frontend)(nil)

// Handler serves fe and its dashboard d on one mux: the page at / to a browser and fe's JSON
// index to everyone else, fe's call routes, d's routes (Register), and fe's 404 and 405
// answers for the rest. d must be New(fe, win, ...) with win fed by fe
// (frontend.WithObserver(win)). Register d.EndStreams with the server's RegisterOnShutdown,
// and Close d before fe.
func Handler(fe *frontend.Frontend, d *Dashboard) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if wantsHTML(r) {
			d.ServePage(w, r)
			return
		}
		fe.ServeIndex(w, r)
	})
	fe.Register(mux)
	d.Register(mux)
	mux.Handle("/", fe.NotFound(mux, "GET /events", "GET /dashboard/state"))
	return mux
}

// wantsHTML reports whether the client prefers HTML to JSON (a browser does).
func wantsHTML(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch mt {
		case "text/html":
			return true
		case "application/json":
			return false
		}
	}
	return false
}
