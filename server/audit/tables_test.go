package audit

import (
	"slices"
	"testing"
)

func TestTables(t *testing.T) {
	for q, want := range map[string][]string{
		`SELECT count(*) FROM "grant_health"."population_resident_registration_1"`: {"grant_health.population_resident_registration_1"},
		"SELECT a FROM population_resident_registration ORDER BY name":             {"population_resident_registration"},
		"SELECT * FROM `db`.events e JOIN geography.standard_address s ON 1":       {"db.events", "geography.standard_address"},
		"SELECT 1": nil,
	} {
		if got := Tables(q); !slices.Equal(got, want) {
			t.Errorf("Tables(%q) = %v, want %v", q, got, want)
		}
	}
}
