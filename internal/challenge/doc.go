// Package challenge turns the decision engine's "challenge" verdict into
// something a real browser can pass and a botnet cannot cheaply: a
// proof-of-work page (SHA-256 in Web Workers), a slower no-JavaScript path
// (meta refresh with a server-enforced delay), and on success a signed
// clearance token in a cookie, bound to the client's network prefix and
// fingerprint.
//
// The core is protocol independent: [Signer] issues and verifies tokens and
// challenges, [ReplaySet] makes challenges single use, [Revoker] revokes
// tokens that are shared between networks or used faster than one person
// could, and [Service] ties them together with the precomputed pages.
// Thin adapters serve the pages and the verification endpoints from a
// fasthttp handler (fasthttp.go) or a net/http handler (nethttp.go).
//
// Everything on the request path takes the time as an argument and
// allocates nothing for the common case (a valid token).
package challenge
