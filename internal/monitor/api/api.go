// Package api holds the wire types shared by the monitor collector and its
// agents: the probe plan an agent fetches and the result batches it posts.
// Both directions are JSON over HTTP with a per-agent bearer token.
package api

import (
	"time"

	"github.com/levee-dev/levee/internal/monitor/probe"
)

// Paths served by the collector for agents.
const (
	PlanPath    = "/api/v1/agent/plan"
	ResultsPath = "/api/v1/agent/results"
)

// MaxBatch is the most results an agent sends in one request; the collector
// rejects larger batches.
const MaxBatch = 500

// PlanTarget is one target an agent should probe.
type PlanTarget struct {
	Name string     `json:"name"`
	Spec probe.Spec `json:"spec"`
	// Interval, Timeout are in nanoseconds on the wire.
	Interval time.Duration `json:"interval_ns"`
	Timeout  time.Duration `json:"timeout_ns"`
	Jitter   float64       `json:"jitter"`
}

// Plan is what the collector asks one agent to do.
type Plan struct {
	// Vantage is the agent's name as the collector knows it.
	Vantage string       `json:"vantage"`
	Targets []PlanTarget `json:"targets"`
	// Refresh is how often the agent should fetch the plan again.
	Refresh time.Duration `json:"refresh_ns"`
}

// Results is a batch of probe results posted by an agent, oldest first.
type Results struct {
	Results []probe.Result `json:"results"`
}

// Ack is the collector's answer to a Results batch. Every result in the
// batch was durably handled: stored (Accepted), already stored (Duplicate)
// or refused for good (Rejected, e.g. unknown target or too old), so the
// agent may delete the whole batch from its buffer.
type Ack struct {
	Accepted  int `json:"accepted"`
	Duplicate int `json:"duplicate"`
	Rejected  int `json:"rejected"`
}
