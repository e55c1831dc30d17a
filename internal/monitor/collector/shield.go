package collector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/levee-dev/levee/internal/monitor"
)

// The collector asks a linked shield for its attack incidents with
// GET <admin_url><incidents_path>?from=RFC3339&to=RFC3339 (incidents_path
// defaults to /v1/incidents, next to the admin API's /v1/status). The answer
// may be a JSON array of objects or an object with an "incidents" array;
// objects are shown field by field, unchanged.

// shieldIncidents fetches the shield's incidents overlapping [from, to].
func shieldIncidents(ctx context.Context, client *http.Client, sh *monitor.Shield, from, to time.Time) ([]map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	q := url.Values{"from": {from.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}}
	u := strings.TrimRight(sh.AdminURL, "/") + sh.IncidentsPath + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if sh.Token != "" {
		req.Header.Set("Authorization", "Bearer "+sh.Token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("shield admin API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("shield admin API: %s answered %d", sh.IncidentsPath, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("shield admin API: read: %w", err)
	}
	var list []map[string]any
	if err := json.Unmarshal(b, &list); err == nil {
		return list, nil
	}
	var wrapped struct {
		Incidents []map[string]any `json:"incidents"`
	}
	if err := json.Unmarshal(b, &wrapped); err != nil {
		return nil, fmt.Errorf("shield admin API: decode: %w", err)
	}
	return wrapped.Incidents, nil
}
