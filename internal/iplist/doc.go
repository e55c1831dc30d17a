// Package iplist matches client addresses against prefix lists: allow and
// block lists from the configuration, third-party threat feeds and runtime
// bans.
//
// A Builder compiles prefixes into an immutable Table answering
// longest-prefix-match lookups without locks or allocations. Parse reads the
// common list formats (plain IP/CIDR lists, FireHOL netsets, Spamhaus DROP in
// JSON-lines and legacy text form). A Set keeps a table built from files and
// rebuilds it when they change; Bans holds timed runtime bans, written
// through to a BanStore, and publishes a new table after every change.
//
// Readers load the current table through an atomic pointer, so the accept
// path never waits for a rebuild.
package iplist
