package incident

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func src(addr string, n uint64, attack bool) Count {
	a := netip.MustParseAddr(addr)
	return Count{Value: addr, Requests: n, Prefix: netip.PrefixFrom(a, a.BitLen()), Attack: attack}
}

func TestBlocklist(t *testing.T) {
	tests := []struct {
		name    string
		sources []Count
		opt     BlocklistOptions
		want    string
	}{
		{
			name:    "few sources stay addresses",
			sources: []Count{src("192.0.2.1", 10, true), src("192.0.2.9", 10, true), src("198.51.100.7", 3, true)},
			want:    "[192.0.2.1/32 192.0.2.9/32 198.51.100.7/32]",
		},
		{
			name: "a /24 with 4 attackers is listed whole",
			sources: []Count{src("192.0.2.1", 10, true), src("192.0.2.2", 10, true), src("192.0.2.3", 10, true),
				src("192.0.2.200", 10, true), src("203.0.113.5", 10, true)},
			want: "[192.0.2.0/24 203.0.113.5/32]",
		},
		{
			name: "sibling /24s merge into a /23, adjacent /32s into a /31",
			sources: []Count{src("10.0.0.1", 5, true), src("10.0.0.2", 5, true), src("10.0.0.3", 5, true), src("10.0.0.4", 5, true),
				src("10.0.1.1", 5, true), src("10.0.1.2", 5, true), src("10.0.1.3", 5, true), src("10.0.1.4", 5, true),
				src("172.16.0.6", 5, true), src("172.16.0.7", 5, true)},
			want: "[10.0.0.0/23 172.16.0.6/31]",
		},
		{
			name: "non-attack sources and protected networks are left out",
			sources: []Count{src("192.0.2.1", 10, true), src("192.0.2.2", 10, true), src("192.0.2.3", 10, true),
				src("192.0.2.4", 10, true), src("198.51.100.1", 99, false), src("203.0.113.9", 10, true)},
			opt:  BlocklistOptions{Protect: []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25"), netip.MustParsePrefix("203.0.113.9/32")}},
			want: "[192.0.2.1/32 192.0.2.2/31 192.0.2.4/32]",
		},
		{
			name:    "min requests",
			sources: []Count{src("192.0.2.1", 1, true), src("192.0.2.7", 50, true)},
			opt:     BlocklistOptions{MinRequests: 2},
			want:    "[192.0.2.7/32]",
		},
		{
			name: "IPv6 /64 and mapped addresses",
			sources: []Count{src("2001:db8::1", 5, true), src("2001:db8::2", 5, true), src("2001:db8::3", 5, true),
				src("2001:db8::4", 5, true), src("2001:db8:1::9", 5, true), src("::ffff:192.0.2.5", 5, true)},
			want: "[192.0.2.5/32 2001:db8::/64 2001:db8:1::9/128]",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Blocklist(&Incident{Sources: tc.sources}, tc.opt)
			if fmt.Sprint(got) != tc.want {
				t.Fatalf("got %v, want %s", got, tc.want)
			}
		})
	}
}

func TestMergePrefixesNeverWidens(t *testing.T) {
	// Every address covered after merging was covered before.
	in := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/25"), netip.MustParsePrefix("10.0.0.128/25"),
		netip.MustParsePrefix("10.0.1.0/25"), netip.MustParsePrefix("10.0.3.0/24"), netip.MustParsePrefix("10.0.0.5/32")}
	out := MergePrefixes(append([]netip.Prefix(nil), in...))
	if fmt.Sprint(out) != "[10.0.0.0/24 10.0.1.0/25 10.0.3.0/24]" {
		t.Fatalf("merged %v", out)
	}
}

func exportIncident() *Incident {
	inc := &Incident{ID: "20260401T080000Z-www-1", Site: "www", Start: time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC),
		End: time.Date(2026, 4, 1, 8, 5, 0, 0, time.UTC)}
	add := func(a string, n uint64, asn uint32, org, cc string) {
		c := src(a, n, true)
		c.ASN, c.Org, c.Country = asn, org, cc
		inc.Sources = append(inc.Sources, c)
	}
	add("192.0.2.1", 600, 64500, "Hosting A", "NL")
	add("192.0.2.2", 200, 64500, "Hosting A", "NL")
	add("198.51.100.3", 150, 64501, "Cloud, Inc.", "US")
	add("203.0.113.4", 50, 0, "", "")
	inc.Sources = append(inc.Sources, src("100.64.0.1", 7, false))
	return inc
}

func TestAbuseSummary(t *testing.T) {
	inc := exportIncident()
	got := AbuseSummary(inc)
	if len(got) != 3 {
		t.Fatalf("%d networks: %+v", len(got), got)
	}
	if got[0].ASN != 64500 || got[0].Sources != 2 || got[0].Requests != 800 || got[0].Share != 0.8 || fmt.Sprint(got[0].Prefixes) != "[192.0.2.0/24]" {
		t.Errorf("first %+v", got[0])
	}
	if got[2].ASN != 0 || got[2].Share != 0.05 {
		t.Errorf("last %+v", got[2])
	}
	var buf bytes.Buffer
	if err := WriteAbuseSummary(&buf, inc, got); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"AS64500", "Hosting A", "NL", "80.0%", "unknown", "Cloud, Inc."} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestWriteSourcesCSVAndBlocklist(t *testing.T) {
	inc := exportIncident()
	var buf bytes.Buffer
	if err := WriteSourcesCSV(&buf, inc); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 6 || recs[0][1] != "address" || recs[1][0] != inc.ID || recs[1][1] != "192.0.2.1" || recs[1][2] != "600" || recs[1][5] != "true" ||
		recs[1][6] != "192.0.2.0/24" || recs[1][7] != "64500" || recs[3][8] != "Cloud, Inc." || recs[5][5] != "false" {
		t.Fatalf("csv %q", recs)
	}
	buf.Reset()
	if err := WriteBlocklist(&buf, BlocklistHeader(inc), Blocklist(inc, BlocklistOptions{})); err != nil {
		t.Fatal(err)
	}
	want := "# levee blocklist for incident 20260401T080000Z-www-1 (site www)\n# attack 2026-04-01T08:00:00Z - 2026-04-01T08:05:00Z\n# 4 prefixes\n192.0.2.1\n192.0.2.2\n198.51.100.3\n203.0.113.4\n"
	if buf.String() != want {
		t.Fatalf("blocklist\n%s\nwant\n%s", buf.String(), want)
	}
	buf.Reset()
	if err := WriteJSON(&buf, inc); err != nil {
		t.Fatal(err)
	}
	var back Incident
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.ID != inc.ID || len(back.Sources) != 5 || !back.Sources[0].Attack {
		t.Fatalf("json round trip: %v %+v", err, back)
	}
}
