package probe

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

var dnsTypes = map[string]uint16{
	"A": dns.TypeA, "AAAA": dns.TypeAAAA, "CNAME": dns.TypeCNAME, "MX": dns.TypeMX,
	"TXT": dns.TypeTXT, "NS": dns.TypeNS, "SOA": dns.TypeSOA,
}

var rcodes = dns.StringToRcode

func (p *Prober) dns(ctx context.Context) Result {
	var r Result
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(p.spec.Query), dnsTypes[p.spec.Type])
	m.RecursionDesired = true
	c := &dns.Client{Net: "udp"}
	if dl, ok := ctx.Deadline(); ok {
		c.Timeout = time.Until(dl)
	}
	start := time.Now()
	in, rtt, err := c.ExchangeContext(ctx, m, p.spec.Server)
	r.Timings.DNS = time.Since(start)
	r.Timings.Total = r.Timings.DNS
	if err != nil {
		f := Classify(err)
		if f == FailOther || f == FailReset {
			f = FailDNS
		}
		return fail(r, f, short(err))
	}
	_ = rtt
	r.Status = in.Rcode
	if want := rcodes[p.spec.ExpectRcode]; in.Rcode != want {
		return fail(r, FailDNSRcode, fmt.Sprintf("rcode %s, want %s", dns.RcodeToString[in.Rcode], p.spec.ExpectRcode))
	}
	if want := p.spec.ExpectAnswer; want != "" {
		for _, rr := range in.Answer {
			if strings.Contains(rr.String(), want) {
				return r
			}
		}
		return fail(r, FailDNSAnswer, fmt.Sprintf("no answer record contains %q (%d records)", want, len(in.Answer)))
	}
	return r
}
