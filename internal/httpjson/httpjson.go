// Package httpjson writes the JSON answers of Spread's HTTP APIs (frontend, dashboard, demo
// cluster controls) in one shape: indented JSON, errors as {"error": "..."}.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write sends v as indented JSON with status code.
func Write(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) // the status is sent; a failed write leaves nothing to tell
}

// Error sends {"error": err} with status code.
func Error(w http.ResponseWriter, code int, err error) {
	Write(w, code, map[string]string{"error": err.Error()})
}
