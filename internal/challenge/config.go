package challenge

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Config configures challenges and clearance tokens (yaml: challenge).
// Zero fields take the defaults named in their comments; Validate checks the
// rest. Keys must be shared by all shield nodes that should accept each
// other's tokens.
type Config struct {
	// Keys is the HMAC key ring: the first key signs, older keys are
	// accepted until their accept_until. Required.
	Keys []Key `yaml:"keys"`
	// CookieName of the clearance cookie. Default "levee_clearance".
	CookieName string `yaml:"cookie_name"`
	// CookieDomain, if set, lets subdomains share the clearance. Default
	// empty (host-only cookie).
	CookieDomain string `yaml:"cookie_domain"`
	// InsecureCookie drops the Secure attribute, for plain-HTTP sites and
	// tests. Default false (Secure set).
	InsecureCookie bool `yaml:"insecure_cookie"`
	// TokenTTL is how long a clearance token is valid. Default 1h.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// NoJSTokenTTL is the validity of tokens earned on the no-JavaScript
	// path. Default TokenTTL.
	NoJSTokenTTL time.Duration `yaml:"nojs_token_ttl"`
	// ChallengeTTL is how long a served challenge may be answered.
	// Default 5m.
	ChallengeTTL time.Duration `yaml:"challenge_ttl"`
	// NoJSDelay is the wait the server enforces on the no-JavaScript path
	// before it issues a token. Default 5s; at least 1s.
	NoJSDelay time.Duration `yaml:"nojs_delay"`
	// PrefixV4 and PrefixV6 are the network prefixes tokens are bound to.
	// Defaults 24 and 64.
	PrefixV4 int `yaml:"prefix_v4"`
	PrefixV6 int `yaml:"prefix_v6"`
	// Difficulty of the proof of work, in leading zero bits of SHA-256.
	Difficulty DifficultyConfig `yaml:"difficulty"`
	// Allow lists clients and paths that never get a challenge.
	Allow AllowConfig `yaml:"allow"`
	// Revoke bounds the use of one token.
	Revoke RevokeConfig `yaml:"revoke"`
	// ReplayCapacity is the number of used challenge ids remembered until
	// they expire. Default 1048576.
	ReplayCapacity int `yaml:"replay_capacity"`
	// Language of the page when Accept-Language names none of the
	// available ones ("en", "de", "fr"). Default "en".
	Language string `yaml:"language"`
	// APIStatus is the HTTP status of the JSON answer to clients that
	// accept application/json but not text/html: 403 or 429. Default 403.
	APIStatus int `yaml:"api_status"`
}

// DifficultyConfig maps the shield's mode and the client's risk to a
// proof-of-work difficulty.
type DifficultyConfig struct {
	// Default difficulty in bits. Default 16 (about 65,000 hashes).
	Default uint8 `yaml:"default"`
	// Modes overrides Default per shield mode, e.g. under_attack: 18.
	// Default {under_attack: 18}.
	Modes map[string]uint8 `yaml:"modes"`
	// RiskStep is added per risk level (0 = normal client). Default 2.
	RiskStep uint8 `yaml:"risk_step"`
	// Max caps the result. Default 24; at most 32.
	Max uint8 `yaml:"max"`
}

// AllowConfig keeps health checks and known integrations out of challenges.
type AllowConfig struct {
	// Paths: request paths starting with one of these are never
	// challenged (e.g. /healthz, /.well-known/acme-challenge/).
	Paths []string `yaml:"paths"`
	// CIDRs: clients in these networks are never challenged.
	CIDRs []string `yaml:"cidrs"`
	// UserAgents: clients whose User-Agent contains one of these strings
	// are never challenged. User-Agent is trivially forged; pair with CIDRs
	// for anything that matters.
	UserAgents []string `yaml:"user_agents"`
}

// SetDefaults fills zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.CookieName == "" {
		c.CookieName = "levee_clearance"
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = time.Hour
	}
	if c.NoJSTokenTTL == 0 {
		c.NoJSTokenTTL = c.TokenTTL
	}
	if c.ChallengeTTL == 0 {
		c.ChallengeTTL = 5 * time.Minute
	}
	if c.NoJSDelay == 0 {
		c.NoJSDelay = 5 * time.Second
	}
	if c.PrefixV4 == 0 {
		c.PrefixV4 = 24
	}
	if c.PrefixV6 == 0 {
		c.PrefixV6 = 64
	}
	if c.Difficulty.Default == 0 {
		c.Difficulty.Default = 16
	}
	if c.Difficulty.Modes == nil {
		c.Difficulty.Modes = map[string]uint8{"under_attack": 18}
	}
	if c.Difficulty.RiskStep == 0 {
		c.Difficulty.RiskStep = 2
	}
	if c.Difficulty.Max == 0 {
		c.Difficulty.Max = 24
	}
	if c.ReplayCapacity == 0 {
		c.ReplayCapacity = 1 << 20
	}
	if c.Language == "" {
		c.Language = "en"
	}
	if c.APIStatus == 0 {
		c.APIStatus = 403
	}
	c.Revoke.defaults()
}

// Validate reports the first problem with a defaulted Config.
func (c *Config) Validate() error {
	switch {
	case len(c.Keys) == 0:
		return fmt.Errorf("challenge: keys: at least one key is required (generate one with: head -c 32 /dev/urandom | base64)")
	case !ValidCookieName(c.CookieName):
		return fmt.Errorf("challenge: cookie_name %q: use letters, digits, '-' and '_'", c.CookieName)
	case c.TokenTTL < time.Minute || c.NoJSTokenTTL < time.Minute:
		return fmt.Errorf("challenge: token_ttl %v / nojs_token_ttl %v: at least 1m", c.TokenTTL, c.NoJSTokenTTL)
	case c.ChallengeTTL < 10*time.Second || c.ChallengeTTL > time.Hour:
		return fmt.Errorf("challenge: challenge_ttl %v: between 10s and 1h", c.ChallengeTTL)
	case c.NoJSDelay < time.Second || c.NoJSDelay >= c.ChallengeTTL:
		return fmt.Errorf("challenge: nojs_delay %v: at least 1s and below challenge_ttl %v", c.NoJSDelay, c.ChallengeTTL)
	case c.Difficulty.Max > 32:
		return fmt.Errorf("challenge: difficulty.max %d: at most 32 bits", c.Difficulty.Max)
	case c.Difficulty.Default > c.Difficulty.Max:
		return fmt.Errorf("challenge: difficulty.default %d above difficulty.max %d", c.Difficulty.Default, c.Difficulty.Max)
	case c.APIStatus != 403 && c.APIStatus != 429:
		return fmt.Errorf("challenge: api_status %d: use 403 or 429", c.APIStatus)
	case langIndex(c.Language) < 0:
		return fmt.Errorf("challenge: language %q: available are %s", c.Language, strings.Join(languageCodes(), ", "))
	case c.PrefixV4 < 1 || c.PrefixV4 > 32:
		return fmt.Errorf("challenge: prefix_v4 %d: between 1 and 32", c.PrefixV4)
	case c.PrefixV6 < 1 || c.PrefixV6 > 128:
		return fmt.Errorf("challenge: prefix_v6 %d: between 1 and 128", c.PrefixV6)
	case c.Revoke.MaxForeignPrefixes < 1 || c.Revoke.MaxRequests < 1 || c.Revoke.WindowSeconds < 1:
		return fmt.Errorf("challenge: revoke: limits must be positive")
	}
	for m, d := range c.Difficulty.Modes {
		if d > c.Difficulty.Max {
			return fmt.Errorf("challenge: difficulty.modes.%s %d above difficulty.max %d", m, d, c.Difficulty.Max)
		}
	}
	for _, s := range c.Allow.CIDRs {
		if _, err := parseCIDR(s); err != nil {
			return fmt.Errorf("challenge: allow.cidrs: %w", err)
		}
	}
	for _, p := range c.Allow.Paths {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("challenge: allow.paths %q: must start with /", p)
		}
	}
	return nil
}

// ValidCookieName reports whether s is a non-empty cookie name of letters,
// digits, '-' and '_' (a safe subset of RFC 6265 tokens).
func ValidCookieName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func parseCIDR(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither an address nor a CIDR", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
