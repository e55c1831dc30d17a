package fingerprint

import "crypto/tls"

// Extensions that a client sends or leaves out depending on its session
// cache: pre_shared_key (0x0029) and early_data (0x002a) appear when it
// resumes, session_ticket (0x0023) when it keeps tickets. JA4 counts and
// hashes them, so a browser's JA4 differs between its first connection and
// its resumed ones.
func resumptionExt(v uint16) bool { return v == 0x0023 || v == 0x0029 || v == 0x002a }

// Stable returns the hello without the resumption-dependent extensions.
func (h *ClientHello) Stable() ClientHello {
	s := *h
	s.Extensions = make([]uint16, 0, len(h.Extensions))
	for _, e := range h.Extensions {
		if !resumptionExt(e) {
			s.Extensions = append(s.Extensions, e)
		}
	}
	return s
}

// JA4Stable is JA4 computed without the extensions that depend on TLS
// session resumption (see [ClientHello.Stable]). It is a Levee variant, not
// FoxIO's JA4: use it where one client must keep one value across
// connections, such as binding challenge clearance tokens
// (challenge.BindFingerprint(JA4Stable(hello))); use JA4 to compare with
// published fingerprints.
func JA4Stable(hello *tls.ClientHelloInfo) string {
	ch := FromClientHelloInfo(hello)
	st := ch.Stable()
	return st.JA4()
}
