// Package fhirschema validates JSON against HL7's JSON schema of FHIR R4 (4.0.1), which it embeds
// (README.md says where it comes from). Tests use it to prove that what telemed exports is FHIR; the
// server itself does not import it, so the schema is not in the binary.
package fhirschema

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed fhir.schema.json.gz
var schemaGz []byte

var schema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	zr, err := gzip.NewReader(bytes.NewReader(schemaGz))
	if err != nil {
		return nil, fmt.Errorf("gunzip FHIR schema: %w", err)
	}
	doc, err := jsonschema.UnmarshalJSON(zr)
	if err != nil {
		return nil, fmt.Errorf("read FHIR schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("fhir.schema.json", doc); err != nil {
		return nil, fmt.Errorf("add FHIR schema: %w", err)
	}
	return c.Compile("fhir.schema.json")
})

// Validate checks that body is a FHIR R4 resource as the schema defines it. The error says where
// it is not.
func Validate(body []byte) error {
	sch, err := schema()
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return sch.Validate(doc)
}
