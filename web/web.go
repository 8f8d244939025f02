// Package web serves spool's pages: the uploader at / and GraphiQL at
// /graphiql. Their TypeScript sources live beside this file; `make web`
// builds them into dist/, which is committed and embedded, so `go build`
// alone gives a binary whose pages work with no network but spool itself.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"

	"github.com/klauspost/compress/gzhttp"
)

// built is dist/ as `make web` left it. An embed.FS has to be a package
// variable; it is read-only and only Pages reads it.
//
//go:embed all:dist
var built embed.FS

// Pages returns the handler for the pages and their assets. The pages'
// own paths are fixed; anything else is 404 rather than the uploader, so
// a mistyped API path does not answer 200 with HTML.
func Pages() http.Handler {
	dist, err := fs.Sub(built, "dist")
	if err != nil {
		panic(err) // dist is embedded at build time; it cannot be missing
	}
	assets := http.FileServerFS(dist)
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", page(dist, "index.html"))
	mux.Handle("GET /graphiql", page(dist, "graphiql.html"))
	mux.Handle("GET /assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Vite names assets by their content hash: a name never changes
		// meaning, so browsers may keep them for good.
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		assets.ServeHTTP(w, r)
	}))
	return gzhttp.GzipHandler(secureHeaders(mux))
}

// page serves one HTML file; it is revalidated on every load so a new
// build's asset names are picked up at once.
func page(dist fs.FS, name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(dist, name)
		if err != nil {
			http.Error(w, "this binary was built without its web pages: run `make web`", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(b)
	})
}

// secureHeaders keeps the pages from being framed (clickjacking a
// Delete button) and from leaking signed URLs in Referer headers.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		if strings.HasSuffix(r.URL.Path, "/") || !strings.Contains(r.URL.Path, ".") {
			h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		}
		next.ServeHTTP(w, r)
	})
}
