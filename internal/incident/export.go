package incident

import (
	"bufio"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the incident as indented JSON.
func WriteJSON(w io.Writer, inc *Incident) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(inc); err != nil {
		return fmt.Errorf("incident: write json: %w", err)
	}
	return nil
}

// WriteSourcesCSV writes one line per source seen during the incidents:
// incident, address, requests, share (of the incident's requests),
// expected (normal requests), attack (true or false), prefix (/24 or /64),
// asn, org, country.
func WriteSourcesCSV(w io.Writer, incs ...*Incident) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"incident", "address", "requests", "share", "expected", "attack", "prefix", "asn", "org", "country"})
	for _, inc := range incs {
		writeSources(cw, inc)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("incident: write sources csv: %w", err)
	}
	return nil
}

func writeSources(cw *csv.Writer, inc *Incident) {
	for _, s := range inc.Sources {
		asn := ""
		if s.ASN != 0 {
			asn = strconv.FormatUint(uint64(s.ASN), 10)
		}
		pfx := ""
		if s.Prefix.IsValid() {
			pfx = aggregatePrefix(s.Prefix.Addr()).String()
		}
		_ = cw.Write([]string{inc.ID, s.Value, strconv.FormatUint(s.Requests, 10), strconv.FormatFloat(s.Share, 'f', 6, 64),
			strconv.FormatFloat(s.Expected, 'f', 1, 64), strconv.FormatBool(s.Attack), pfx, asn, s.Org, s.Country})
	}
}

func aggregatePrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

// BlocklistOptions tune Blocklist. The zero value uses the defaults.
type BlocklistOptions struct {
	// MinRequests is the least requests a source must have sent to be
	// listed. Default 1.
	MinRequests uint64
	// MinPerPrefix is how many distinct attack sources a /24 (IPv4) or /64
	// (IPv6) must hold to be listed whole instead of address by address.
	// Default 4. Set it above 256 to never widen.
	MinPerPrefix int
	// Protect lists networks that must never be covered: known good
	// clients, the site's own monitoring, upstream proxies. Sources inside
	// them are left out and their /24 or /64 is never listed whole.
	Protect []netip.Prefix
}

// Blocklist aggregates the incident's sources into prefixes for a firewall
// or an upstream provider:
//
//  1. only attack sources (Count.Attack) are considered; those with fewer
//     than MinRequests requests or inside a Protect network are dropped;
//  2. a /24 (IPv4) or /64 (IPv6) holding at least MinPerPrefix attack
//     sources, and overlapping no Protect network, is listed whole (the
//     network is "mostly attack": several of its hosts attacked and none is
//     known good); the other sources are listed as /32 or /128;
//  3. prefixes covered by others are dropped and two sibling prefixes (the
//     two halves of one shorter prefix) are merged, repeatedly. This last
//     step never covers an address that step 2 did not.
//
// The result is sorted, IPv4 first.
func Blocklist(inc *Incident, opt BlocklistOptions) []netip.Prefix {
	if opt.MinRequests == 0 {
		opt.MinRequests = 1
	}
	if opt.MinPerPrefix == 0 {
		opt.MinPerPrefix = 4
	}
	protected := func(p netip.Prefix) bool {
		for _, q := range opt.Protect {
			if q.Overlaps(p) {
				return true
			}
		}
		return false
	}
	groups := map[netip.Prefix][]netip.Addr{}
	for _, s := range inc.Sources {
		if !s.Attack || s.Requests < opt.MinRequests || !s.Prefix.IsValid() {
			continue
		}
		a := s.Prefix.Addr().Unmap()
		if protected(netip.PrefixFrom(a, a.BitLen())) {
			continue
		}
		g := aggregatePrefix(a)
		groups[g] = append(groups[g], a)
	}
	var out []netip.Prefix
	for g, addrs := range groups {
		if len(addrs) >= opt.MinPerPrefix && !protected(g) {
			out = append(out, g)
			continue
		}
		for _, a := range addrs {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return MergePrefixes(out)
}

// MergePrefixes sorts ps (IPv4 first), removes prefixes covered by others
// and merges sibling halves into their parent, repeatedly. The result
// covers exactly the addresses ps covered. It reorders ps in place.
func MergePrefixes(ps []netip.Prefix) []netip.Prefix {
	sortPrefixes(ps)
	for {
		// Drop prefixes covered by an earlier (shorter or equal) one.
		var kept []netip.Prefix
		for _, p := range ps {
			if n := len(kept); n > 0 && kept[n-1].Bits() <= p.Bits() && kept[n-1].Contains(p.Addr()) {
				continue
			}
			kept = append(kept, p)
		}
		// Merge adjacent siblings.
		changed := false
		var merged []netip.Prefix
		for i := 0; i < len(kept); i++ {
			p := kept[i]
			if i+1 < len(kept) && p.Bits() > 0 && kept[i+1].Bits() == p.Bits() {
				parent, _ := p.Addr().Prefix(p.Bits() - 1)
				if parent.Addr() == p.Addr() && parent.Contains(kept[i+1].Addr()) {
					merged = append(merged, parent)
					i++
					changed = true
					continue
				}
			}
			merged = append(merged, p)
		}
		ps = merged
		if !changed {
			return ps
		}
		sortPrefixes(ps)
	}
}

func sortPrefixes(ps []netip.Prefix) {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if a.Addr().Is4() != b.Addr().Is4() {
			if a.Addr().Is4() {
				return -1
			}
			return 1
		}
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
}

// BlocklistHeader is the comment header WriteBlocklist uses for one
// incident.
func BlocklistHeader(inc *Incident) string {
	return fmt.Sprintf("levee blocklist for incident %s (site %s)\nattack %s - %s",
		inc.ID, inc.Site, inc.Start.UTC().Format("2006-01-02T15:04:05Z"), endString(inc))
}

// WriteBlocklist writes the header lines as "# " comments, then one prefix
// per line (single addresses without a length): the format firewalls
// (ipset, nftables sets, iptables scripts) and upstream providers take.
func WriteBlocklist(w io.Writer, header string, prefixes []netip.Prefix) error {
	bw := bufio.NewWriter(w)
	for _, l := range strings.Split(header, "\n") {
		if l != "" {
			fmt.Fprintf(bw, "# %s\n", l)
		}
	}
	fmt.Fprintf(bw, "# %d prefixes\n", len(prefixes))
	for _, p := range prefixes {
		if p.IsSingleIP() {
			bw.WriteString(p.Addr().String())
		} else {
			bw.WriteString(p.String())
		}
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("incident: write blocklist: %w", err)
	}
	return nil
}

func endString(inc *Incident) string {
	if inc.End.IsZero() {
		return "ongoing"
	}
	return inc.End.UTC().Format("2006-01-02T15:04:05Z")
}

// AbuseEntry is one network of an abuse summary.
type AbuseEntry struct {
	ASN      uint32   `json:"asn"`
	Org      string   `json:"org"`
	Country  string   `json:"country"`
	Sources  int      `json:"sources"`
	Requests uint64   `json:"requests"`
	Share    float64  `json:"share"` // of the requests of the listed sources
	Prefixes []string `json:"prefixes"`
}

// AbuseSummary groups the incident's attack sources by network (ASN, owner,
// country; "unknown" without GeoIP data), largest share first: what to
// send to each network's abuse contact.
func AbuseSummary(inc *Incident) []AbuseEntry {
	type key struct {
		asn     uint32
		country string
	}
	byNet := map[key]*AbuseEntry{}
	prefixes := map[key]map[string]bool{}
	var total uint64
	for _, s := range inc.Sources {
		if s.Attack {
			total += s.Requests
		}
	}
	for _, s := range inc.Sources {
		if !s.Attack {
			continue
		}
		k := key{s.ASN, s.Country}
		e := byNet[k]
		if e == nil {
			e = &AbuseEntry{ASN: s.ASN, Org: s.Org, Country: s.Country}
			byNet[k] = e
			prefixes[k] = map[string]bool{}
		}
		e.Sources++
		e.Requests += s.Requests
		if s.Prefix.IsValid() {
			prefixes[k][aggregatePrefix(s.Prefix.Addr()).String()] = true
		}
	}
	out := make([]AbuseEntry, 0, len(byNet))
	for k, e := range byNet {
		if total > 0 {
			e.Share = float64(e.Requests) / float64(total)
		}
		for p := range prefixes[k] {
			e.Prefixes = append(e.Prefixes, p)
		}
		sort.Strings(e.Prefixes)
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Requests != out[j].Requests {
			return out[i].Requests > out[j].Requests
		}
		return out[i].ASN < out[j].ASN
	})
	return out
}

// WriteAbuseSummary writes the summary as a readable table.
func WriteAbuseSummary(w io.Writer, inc *Incident, entries []AbuseEntry) error {
	fmt.Fprintf(w, "Abuse summary for incident %s (site %s), %s - %s\n\n", inc.ID, inc.Site,
		inc.Start.UTC().Format("2006-01-02T15:04:05Z"), endString(inc))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ASN\tOWNER\tCOUNTRY\tSOURCES\tREQUESTS\tSHARE\tPREFIXES")
	for _, e := range entries {
		asn, org, cc := "unknown", e.Org, e.Country
		if e.ASN != 0 {
			asn = "AS" + strconv.FormatUint(uint64(e.ASN), 10)
		}
		if org == "" {
			org = "-"
		}
		if cc == "" {
			cc = "-"
		}
		ps := e.Prefixes
		more := ""
		if len(ps) > 5 {
			more = fmt.Sprintf(" +%d", len(ps)-5)
			ps = ps[:5]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.1f%%\t%v%s\n", asn, org, cc, e.Sources, e.Requests, 100*e.Share, ps, more)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("incident: write abuse summary: %w", err)
	}
	return nil
}
