package challenge

import (
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestConfigYAML(t *testing.T) {
	src := `
keys:
  - id: 2
    secret: "` + testSecret(2) + `"
  - id: 1
    secret: "` + testSecret(1) + `"
    accept_until: 2026-12-01T00:00:00Z
cookie_name: clearance
token_ttl: 30m
nojs_delay: 8s
difficulty:
  default: 14
  modes: {under_attack: 20}
allow:
  paths: [/healthz]
  cidrs: [10.0.0.0/8]
revoke:
  max_foreign_prefixes: 2
language: de
api_status: 429
`
	var cfg Config
	if err := yaml.Unmarshal([]byte(src), &cfg); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.TokenTTL != 30*time.Minute || c.NoJSTokenTTL != 30*time.Minute || c.NoJSDelay != 8*time.Second || c.ChallengeTTL != 5*time.Minute {
		t.Errorf("durations: %+v", c)
	}
	if !c.Keys[1].AcceptUntil.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("accept_until %v", c.Keys[1].AcceptUntil)
	}
	if s.Difficulty("under_attack", 0) != 20 || s.Difficulty("normal", 0) != 14 || c.Revoke.MaxForeignPrefixes != 2 || c.Revoke.MaxRequests != 1200 {
		t.Errorf("difficulty/revoke: %+v %+v", c.Difficulty, c.Revoke)
	}
	if s.CookieName() != "clearance" || s.APIStatus() != 429 || languages[s.defLang].Code != "de" {
		t.Errorf("cookie %s status %d lang %s", s.CookieName(), s.APIStatus(), languages[s.defLang].Code)
	}
}
