// Package web is the shoppers' page: plain HTML, CSS and JavaScript
// embedded in the binary, no build step.
package web

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/labstack/echo/v4"
)

//go:embed static
var files embed.FS

// Static is the page's files.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree always has "static"
	}
	return sub
}

// csp allows only the page's own scripts and styles, and images from the
// gateway (product images) or the picked file (blob:).
const csp = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

// Register serves the page at / and its assets under /static/.
func Register(e *echo.Echo) {
	static := Static()
	index, _ := fs.ReadFile(static, "index.html")
	secure := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			h.Set("Content-Security-Policy", csp)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			return next(c)
		}
	}
	e.GET("/", func(c echo.Context) error { return c.HTMLBlob(http.StatusOK, index) }, secure)
	e.GET("/static/*", echo.WrapHandler(http.StripPrefix("/static/", http.FileServerFS(static))), secure)
}
