package challenge

import (
	"encoding/base64"
	"strings"
)

func testSecret(b byte) string {
	return base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(rune('a'+b%26)), 32)))
}

func testConfig() Config {
	return Config{Keys: []Key{{ID: 1, Secret: testSecret(1)}}}
}

func bf(s string) Binding { return BindFingerprint(s) }
