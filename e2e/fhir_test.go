package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/telemed/telemed/internal/fhir/fhirschema"
)

// fhirGet fetches a FHIR endpoint, checks the content type and that the body validates against the
// FHIR R4 schema, and returns the status and the decoded body.
func fhirGet(t *testing.T, m *monitoringEnv, path string, header map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", m.srv.BaseURL()+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Fatalf("GET %s: content type %q", path, ct)
	}
	if err := fhirschema.Validate(body); err != nil {
		t.Fatalf("GET %s: does not validate against the FHIR R4 schema: %v\n%s", path, err, body)
	}
	var out map[string]any
	json.Unmarshal(body, &out)
	return resp.StatusCode, out
}

func TestFHIRExport(t *testing.T) {
	m := startMonitoring(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	at := func(s int) string { return now.Add(time.Duration(s-100) * time.Second).Format(time.RFC3339Nano) }
	samples := make([]string, 250)
	for i := range samples {
		samples[i] = fmt.Sprintf("%.3f", float64(i%50)/50-0.2)
	}
	readings := []string{
		fmt.Sprintf(`{"code":"8867-4","value":72,"unit":"/min","time":%q,"device":"Nonin 3230"}`, at(1)),
		fmt.Sprintf(`{"code":"59408-5","value":97,"unit":"%%","time":%q}`, at(2)),
		fmt.Sprintf(`{"code":"85354-9","time":%q,"components":[{"code":"8480-6","value":128,"unit":"mm[Hg]"},{"code":"8462-4","value":82,"unit":"mm[Hg]"}]}`, at(3)),
		fmt.Sprintf(`{"code":"8310-5","value":36.8,"unit":"Cel","time":%q}`, at(4)),
		fmt.Sprintf(`{"code":"9279-1","value":16,"unit":"/min","time":%q}`, at(5)),
		fmt.Sprintf(`{"code":"131329","unit":"mV","time":%q,"period_ms":4,"samples":[%s]}`, at(6), strings.Join(samples, ",")),
	}
	var res struct{ Accepted int }
	m.api.do("POST", "/api/v1/observations", batch("f-1", readings...), m.dev, &res)
	if res.Accepted != len(readings) {
		t.Fatalf("accepted %d of %d", res.Accepted, len(readings))
	}

	// metadata needs no credentials.
	if status, cs := fhirGet(t, m, "/fhir/r4/metadata", nil); status != 200 || cs["resourceType"] != "CapabilityStatement" || cs["fhirVersion"] != "4.0.1" {
		t.Fatalf("metadata: %d %v", status, cs)
	}
	status, pt := fhirGet(t, m, "/fhir/r4/Patient/"+m.patient.ID, m.provider)
	if status != 200 || pt["id"] != m.patient.ID || pt["birthDate"] != "1950-12-10" {
		t.Fatalf("Patient: %d %v", status, pt)
	}

	q := url.Values{"patient": {m.patient.ID}}
	status, bundle := fhirGet(t, m, "/fhir/r4/Observation?"+q.Encode(), m.provider)
	if status != 200 || bundle["type"] != "searchset" || bundle["total"] != float64(len(readings)) {
		t.Fatalf("search: %d type %v total %v", status, bundle["type"], bundle["total"])
	}
	entries := bundle["entry"].([]any)
	codes := []string{}
	for _, e := range entries {
		r := e.(map[string]any)["resource"].(map[string]any)
		if r["subject"].(map[string]any)["reference"] != "Patient/"+m.patient.ID || r["effectiveDateTime"] == nil {
			t.Fatalf("observation without subject or time: %v", r)
		}
		var cs []string
		for _, c := range r["code"].(map[string]any)["coding"].([]any) {
			cs = append(cs, c.(map[string]any)["code"].(string))
		}
		codes = append(codes, strings.Join(cs, "+"))
	}
	if got, want := strings.Join(codes, " "), "8867-4 2708-6+59408-5 85354-9 8310-5 9279-1 131329"; got != want {
		t.Fatalf("codes in order: %s, want %s", got, want)
	}
	hr := entries[0].(map[string]any)["resource"].(map[string]any)
	vq := hr["valueQuantity"].(map[string]any)
	if vq["value"] != 72.0 || vq["system"] != "http://unitsofmeasure.org" || vq["code"] != "/min" {
		t.Fatalf("heart rate quantity: %v", vq)
	}
	cat := hr["category"].([]any)[0].(map[string]any)["coding"].([]any)[0].(map[string]any)
	if cat["code"] != "vital-signs" {
		t.Fatalf("heart rate category: %v", cat)
	}
	bp := entries[2].(map[string]any)["resource"].(map[string]any)
	if comps := bp["component"].([]any); len(comps) != 2 {
		t.Fatalf("blood pressure components: %v", comps)
	}
	ecg := entries[5].(map[string]any)["resource"].(map[string]any)["valueSampledData"].(map[string]any)
	if ecg["period"] != 4.0 || len(strings.Fields(ecg["data"].(string))) != 250 {
		t.Fatalf("ECG sampled data: period %v, %d samples", ecg["period"], len(strings.Fields(ecg["data"].(string))))
	}

	// By code and time; paging.
	q = url.Values{"patient": {"Patient/" + m.patient.ID}, "code": {"http://loinc.org|8867-4,2708-6"},
		"date": {"ge" + at(1), "le" + at(2)}}
	if _, b := fhirGet(t, m, "/fhir/r4/Observation?"+q.Encode(), m.provider); b["total"] != 2.0 {
		t.Fatalf("by code and date: total %v", b["total"])
	}
	q = url.Values{"patient": {m.patient.ID}, "_count": {"4"}}
	_, page1 := fhirGet(t, m, "/fhir/r4/Observation?"+q.Encode(), m.provider)
	var next string
	for _, l := range page1["link"].([]any) {
		if l.(map[string]any)["relation"] == "next" {
			next = l.(map[string]any)["url"].(string)
		}
	}
	if len(page1["entry"].([]any)) != 4 || !strings.HasPrefix(next, m.srv.BaseURL()+"/fhir/r4/Observation?") {
		t.Fatalf("page 1: %d entries, next %q", len(page1["entry"].([]any)), next)
	}
	_, page2 := fhirGet(t, m, strings.TrimPrefix(next, m.srv.BaseURL()), m.provider)
	if len(page2["entry"].([]any)) != 2 {
		t.Fatalf("page 2: %d entries", len(page2["entry"].([]any)))
	}
	id := entries[1].(map[string]any)["resource"].(map[string]any)["id"].(string)
	if status, o := fhirGet(t, m, "/fhir/r4/Observation/"+id, m.provider); status != 200 || o["id"] != id {
		t.Fatalf("Observation/%s: %d", id, status)
	}

	// Errors are OperationOutcomes that say what is wrong.
	for _, c := range []struct {
		path   string
		header map[string]string
		status int
		says   string
	}{
		{"/fhir/r4/Observation?patient=" + m.patient.ID, nil, 401, "API token"},
		{"/fhir/r4/Observation?patient=" + m.patient.ID, map[string]string{"Authorization": "Bearer tm_nope"}, 401, "unknown or revoked"},
		{"/fhir/r4/Observation?code=8867-4", m.provider, 400, "patient"},
		{"/fhir/r4/Observation?patient=" + m.patient.ID + "&date=2026-13-01", m.provider, 400, "date"},
		{"/fhir/r4/Observation?patient=" + m.patient.ID + "&status=final", m.provider, 400, "status"},
		{"/fhir/r4/Observation?patient=p-nobody", m.provider, 404, "p-nobody"},
		{"/fhir/r4/Patient/p-nobody", m.provider, 404, "p-nobody"},
		{"/fhir/r4/Encounter/1", m.provider, 404, "no such FHIR endpoint"},
		{"/fhir/r4/metadata?_format=xml", nil, 406, "JSON only"},
		{"/fhir/r4/Patient/" + m.patient.ID + "?_format=application/fhir%2Bxml", m.provider, 406, "JSON only"},
	} {
		status, oo := fhirGet(t, m, c.path, c.header)
		if status != c.status || oo["resourceType"] != "OperationOutcome" {
			t.Errorf("%s: %d %v, want %d OperationOutcome", c.path, status, oo["resourceType"], c.status)
			continue
		}
		if d := oo["issue"].([]any)[0].(map[string]any)["diagnostics"]; !strings.Contains(fmt.Sprint(d), c.says) {
			t.Errorf("%s: diagnostics %q should mention %q", c.path, d, c.says)
		}
	}

	// Every export is in the patient's audit trail.
	var audit struct {
		Audit []struct{ Action, Detail string }
	}
	m.api.do("GET", "/api/v1/patients/"+m.patient.ID+"/audit", "", m.provider, &audit)
	exports := 0
	for _, l := range audit.Audit {
		if l.Action == "fhir.exported" {
			exports++
		}
	}
	if exports != 6 { // Patient, 4 searches, 1 read
		t.Fatalf("%d exports in the audit trail, want 6: %+v", exports, audit.Audit)
	}
}
