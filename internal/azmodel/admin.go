package azmodel

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// adminHandler serves the /_model/ admin API (documented in doc.go).
func adminHandler(m *Model) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_model/snapshot", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, m.Snapshot()) })
	mux.HandleFunc("GET /_model/resources", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, m.Resources()) })
	mux.HandleFunc("GET /_model/vms", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, orEmpty(m.VMs())) })
	mux.HandleFunc("GET /_model/versions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, orEmpty(m.GalleryVersions(r.URL.Query().Get("imageId"))))
	})
	mux.HandleFunc("GET /_model/meter", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, m.Meter()) })
	mux.HandleFunc("GET /_model/requests", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, orEmpty(m.Requests())) })
	mux.HandleFunc("DELETE /_model/requests", func(w http.ResponseWriter, r *http.Request) {
		m.ResetRequests()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_model/rules", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, orEmpty(m.Rules())) })
	mux.HandleFunc("POST /_model/rules", func(w http.ResponseWriter, r *http.Request) {
		var rule Rule
		if !readJSON(w, r, &rule) {
			return
		}
		id, err := m.AddRule(rule)
		if err != nil {
			adminError(w, err)
			return
		}
		writeJSON(w, 200, map[string]int{"id": id})
	})
	mux.HandleFunc("DELETE /_model/rules", func(w http.ResponseWriter, r *http.Request) {
		m.ClearRules()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /_model/rules/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil {
			adminError(w, fmt.Errorf("rule id %q: %w", r.PathValue("id"), err))
			return
		}
		m.RemoveRule(id)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /_model/latency", func(w http.ResponseWriter, r *http.Request) {
		var p LatencyProfile
		if !readJSON(w, r, &p) {
			return
		}
		m.SetLatency(p)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /_model/settings", func(w http.ResponseWriter, r *http.Request) {
		var s struct {
			InProgressPolls *int `json:"inProgressPolls"`
			PageSize        *int `json:"pageSize"`
		}
		if !readJSON(w, r, &s) {
			return
		}
		if s.InProgressPolls != nil {
			m.SetInProgressPolls(*s.InProgressPolls)
		}
		if s.PageSize != nil {
			m.SetPageSize(*s.PageSize)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_model/seed/gallery", func(w http.ResponseWriter, r *http.Request) {
		var s GallerySeed
		if !readJSON(w, r, &s) {
			return
		}
		if err := m.SeedGallery(s); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_model/seed/marketplace", func(w http.ResponseWriter, r *http.Request) {
		var img MarketplaceImage
		if !readJSON(w, r, &img) {
			return
		}
		m.AddMarketplaceImage(img)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_model/tags", func(w http.ResponseWriter, r *http.Request) {
		var t struct {
			ID   string            `json:"id"`
			Tags map[string]string `json:"tags"`
		}
		if !readJSON(w, r, &t) {
			return
		}
		if err := m.SetTags(t.ID, t.Tags); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_model/settle", func(w http.ResponseWriter, r *http.Request) {
		m.Settle()
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		adminError(w, fmt.Errorf("request body: %w", err))
		return false
	}
	return true
}

func adminError(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
}
