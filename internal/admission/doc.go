// Package admission protects an origin from more work than it can serve.
//
// It provides, per upstream:
//
//   - Limiter: an adaptive concurrency limit (gradient style, as Envoy's
//     adaptive concurrency filter and Netflix concurrency-limits do) that learns
//     how many requests in flight the origin takes before its latency rises.
//   - Gate: admission in front of the limit. Requests beyond the limit wait in
//     a short queue served strictly by class (Verified, Normal, Suspect). When
//     the queue stands (has not been empty for an interval, the CoDel idea as
//     used by Facebook's adaptive LIFO), waiters older than the delay target are
//     shed, lowest class first, and each class is served newest first.
//   - Outlier and Breaker: passive health. Outlier ejects an upstream after
//     consecutive errors or a latency outlier, for a time that grows with
//     repeated ejections; Breaker is a closed/open/half-open circuit breaker.
//   - Cookies and History: recognising known clients, by a signed first-party
//     cookie bound to the client's /24 or /64 and by a bounded table of
//     addresses seen in normal times without bad verdicts.
//
// All hot-path methods take the current time as an argument so tests drive
// them with a fake clock. The package imports neither the proxy nor the shield.
package admission
