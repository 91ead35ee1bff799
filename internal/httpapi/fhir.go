package httpapi

import "net/http"

func (a *api) fhirRoutes(mux *http.ServeMux) {}
