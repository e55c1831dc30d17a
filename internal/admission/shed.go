package admission

import "bytes"

// StatusShed is the HTTP status of a shed request.
const StatusShed = 503

var (
	shedHTML = []byte("<!doctype html><html><head><meta charset=\"utf-8\"><title>503 Service busy</title></head>" +
		"<body><h1>Service busy</h1><p>The site is receiving more requests than it can serve right now. " +
		"Please try again in a moment.</p></body></html>\n")
	shedJSON = []byte(`{"error":"service_busy","message":"the site is receiving more requests than it can serve; retry after the Retry-After delay"}` + "\n")
	jsonMIME = []byte("application/json")
	htmlMIME = []byte("text/html")
)

// ShedResponse returns the content type and body of a 503 for a shed request:
// JSON when the Accept header asks for application/json and not for
// text/html, HTML otherwise. The returned slice is shared and must not be
// modified. It does not allocate.
func ShedResponse(accept []byte) (contentType string, body []byte) {
	if bytes.Contains(accept, jsonMIME) && !bytes.Contains(accept, htmlMIME) {
		return "application/json", shedJSON
	}
	return "text/html; charset=utf-8", shedHTML
}

// RetryAfter returns the Retry-After header value (whole seconds) for shed
// requests.
func (g *Gate) RetryAfter() string { return g.retry }
