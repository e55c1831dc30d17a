package challenge

import (
	"bytes"
	"encoding/json"
	"html"
	"strconv"
	"strings"
	"time"
)

// Endpoint paths served by the package.
const (
	PathPrefix = "/.levee/"
	PathVerify = "/.levee/challenge/verify"
	PathNoJS   = "/.levee/nojs"
)

// Page slots: the only bytes that change per response.
const (
	slotChal = iota + 1 // the signed challenge (base64url, safe anywhere)
	slotRetQ            // return path, query-escaped
	slotRetH            // return path, HTML-escaped
	slotWait            // seconds left on the no-JS path
)

type seg struct {
	lit  []byte
	slot int
}

// page is a prebuilt response body: static bytes with a few slots.
type page []seg

const (
	mChal = "\x00C\x00"
	mRetQ = "\x00Q\x00"
	mRetH = "\x00H\x00"
	mWait = "\x00W\x00"
)

var slotMarks = []struct {
	mark string
	slot int
}{{mChal, slotChal}, {mRetQ, slotRetQ}, {mRetH, slotRetH}, {mWait, slotWait}}

func compile(s string) page {
	var p page
	for len(s) > 0 {
		best, slot := -1, 0
		for _, m := range slotMarks {
			if i := strings.Index(s, m.mark); i >= 0 && (best < 0 || i < best) {
				best, slot = i, m.slot
			}
		}
		if best < 0 {
			p = append(p, seg{lit: []byte(s)})
			break
		}
		if best > 0 {
			p = append(p, seg{lit: []byte(s[:best])})
		}
		p = append(p, seg{slot: slot})
		s = s[best+3:]
	}
	return p
}

type slotValues struct {
	chal []byte
	ret  []byte
	wait int
}

func (p page) append(dst []byte, v *slotValues) []byte {
	for _, sg := range p {
		switch sg.slot {
		case 0:
			dst = append(dst, sg.lit...)
		case slotChal:
			dst = append(dst, v.chal...)
		case slotRetQ:
			dst = appendQueryEscape(dst, v.ret)
		case slotRetH:
			dst = appendHTMLEscape(dst, v.ret)
		case slotWait:
			dst = strconv.AppendInt(dst, int64(v.wait), 10)
		}
	}
	return dst
}

func appendQueryEscape(dst, s []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', hex[c>>4], hex[c&15])
		}
	}
	return dst
}

func appendHTMLEscape(dst, s []byte) []byte {
	for _, c := range s {
		switch c {
		case '&':
			dst = append(dst, "&amp;"...)
		case '<':
			dst = append(dst, "&lt;"...)
		case '>':
			dst = append(dst, "&gt;"...)
		case '"':
			dst = append(dst, "&#34;"...)
		case '\'':
			dst = append(dst, "&#39;"...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// safeReturn returns uri if it is a local path to send the client back to,
// else "/". It never lets the page redirect to another site.
func safeReturn(uri []byte) []byte {
	if len(uri) == 0 || len(uri) > 2048 || uri[0] != '/' || (len(uri) > 1 && (uri[1] == '/' || uri[1] == '\\')) {
		return slash
	}
	for _, c := range uri {
		if c < 0x21 || c == 0x7f {
			return slash
		}
	}
	if bytes.HasPrefix(uri, []byte(PathPrefix)) {
		return slash
	}
	return uri
}

var slash = []byte("/")

// pageSet holds every prebuilt page, built once in New.
type pageSet struct {
	challenge [][33]page // [lang][difficulty]
	wait      []page     // [lang]
	denied    []page     // [lang]
	json      []byte
	jsonBusy  []byte
}

const css = `body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1c1e21}` +
	`main{max-width:36em;margin:10vh auto;padding:2em;background:#fff;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12)}` +
	`h1{font-size:1.5em;margin-top:0}h2{font-size:1.15em}progress{width:100%;height:.6em;margin:.5em 0}` +
	`#status{font-weight:600}a{color:#0645ad}footer{margin-top:2em;font-size:.85em;color:#555}`

// workerJS runs in each Web Worker: plain SHA-256 over the ASCII bytes of
// challenge||nonce, trying nonces start, start+step, ... until the hash has
// enough leading zero bits. Kept in a text/plain script block so the page has
// no external resources.
const workerJS = `var K=[0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2];
var IV=[0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19];
var W=new Int32Array(64),H=new Int32Array(8);
function blk(b,o){var i,j,x,y;for(i=0;i<16;i++){j=o+i*4;W[i]=(b[j]<<24)|(b[j+1]<<16)|(b[j+2]<<8)|b[j+3];}
for(i=16;i<64;i++){x=W[i-15];y=W[i-2];W[i]=(W[i-16]+(((x>>>7)|(x<<25))^((x>>>18)|(x<<14))^(x>>>3))+W[i-7]+(((y>>>17)|(y<<15))^((y>>>19)|(y<<13))^(y>>>10)))|0;}
var a=H[0],c1=H[1],c=H[2],d=H[3],e=H[4],f=H[5],g=H[6],h=H[7],t1,t2;
for(i=0;i<64;i++){t1=(h+(((e>>>6)|(e<<26))^((e>>>11)|(e<<21))^((e>>>25)|(e<<7)))+((e&f)^(~e&g))+K[i]+W[i])|0;
t2=((((a>>>2)|(a<<30))^((a>>>13)|(a<<19))^((a>>>22)|(a<<10)))+((a&c1)^(a&c)^(c1&c)))|0;h=g;g=f;f=e;e=(d+t1)|0;d=c;c=c1;c1=a;a=(t1+t2)|0;}
H[0]=(H[0]+a)|0;H[1]=(H[1]+c1)|0;H[2]=(H[2]+c)|0;H[3]=(H[3]+d)|0;H[4]=(H[4]+e)|0;H[5]=(H[5]+f)|0;H[6]=(H[6]+g)|0;H[7]=(H[7]+h)|0;}
function lz(){var n=0,i;for(i=0;i<8;i++){if(H[i]===0){n+=32;continue;}return n+Math.clz32(H[i]);}return n;}
onmessage=function(ev){var c=ev.data.c,d=ev.data.d,n=ev.data.s,k=ev.data.k,b=new Uint8Array(192),p=c.length,i,s,L,nb,o;
for(i=0;i<p;i++)b[i]=c.charCodeAt(i);
for(;;){s=String(n);L=p+s.length;for(i=0;i<s.length;i++)b[p+i]=s.charCodeAt(i);
nb=(L+9+63)&~63;b.fill(0,L,nb);b[L]=0x80;b[nb-2]=(L*8)>>>8;b[nb-1]=(L*8)&255;
for(i=0;i<8;i++)H[i]=IV[i];for(o=0;o<nb;o+=64)blk(b,o);
if(lz()>=d){postMessage(s);return;}n+=k;}};`

// pageJS starts the workers and submits the answer. Messages come from
// data attributes so that the script is the same in every language.
const pageJS = `(function(){var f=document.getElementById('f'),st=document.getElementById('status'),m=document.getElementById('m');
function fail(){st.textContent=m.getAttribute('data-failed');}
try{var c=f.elements.c.value,d=+m.getAttribute('data-d'),k=Math.max(1,Math.min(navigator.hardwareConcurrency||2,8)),ws=[],i,
u=URL.createObjectURL(new Blob([document.getElementById('w').textContent],{type:'text/javascript'}));
function got(e){for(var j=0;j<ws.length;j++)ws[j].terminate();f.elements.n.value=e.data;st.textContent=m.getAttribute('data-done');f.submit();}
for(i=0;i<k;i++){var w=new Worker(u);w.onmessage=got;w.onerror=fail;w.postMessage({c:c,d:d,s:i,k:k});ws.push(w);}}catch(e){fail();}})();`

func buildPages(cfg *Config) *pageSet {
	ps := &pageSet{}
	secs := int((cfg.NoJSDelay + time.Second - 1) / time.Second)
	delay := strconv.Itoa(secs)
	// The refresh waits one second more than the text says: the server
	// counts from the issue time rounded up to the second.
	refresh := strconv.Itoa(secs + 1)
	nojsURL := PathNoJS + "?c=" + mChal + "&amp;r=" + mRetQ
	for li := range languages {
		t := languages[li]
		e := func(s string) string { return html.EscapeString(strings.ReplaceAll(s, "{delay}", delay)) }
		head := `<!DOCTYPE html><html lang="` + t.Code + `"><head><meta charset="utf-8">` +
			`<meta name="viewport" content="width=device-width,initial-scale=1"><meta name="robots" content="noindex,nofollow">` +
			`<title>` + e(t.Title) + `</title>`
		var arr [33]page
		for d := 0; d <= 32; d++ {
			var b strings.Builder
			b.WriteString(head)
			b.WriteString(`<noscript><meta http-equiv="refresh" content="` + refresh + `;url=` + nojsURL + `">` +
				`<style>#js{display:none}</style></noscript>`)
			b.WriteString(`<style>` + css + `</style></head><body><main>`)
			b.WriteString(`<h1>` + e(t.Heading) + `</h1>`)
			// Everything about the puzzle is hidden when scripts are off.
			b.WriteString(`<div id="js"><p>` + e(t.Explain) + `</p>`)
			b.WriteString(`<div id="m" data-d="` + strconv.Itoa(d) + `" data-done="` + e(t.Done) + `" data-failed="` + e(t.Failed) + `" hidden></div>`)
			b.WriteString(`<p id="status" role="status" aria-live="polite">` + e(t.Working) + `</p>`)
			b.WriteString(`<progress aria-labelledby="status"></progress>`)
			b.WriteString(`<p><a id="nojs" href="` + nojsURL + `">` + e(t.AltLink) + `</a></p></div>`)
			b.WriteString(`<form id="f" method="post" action="` + PathVerify + `"><input type="hidden" name="c" value="` + mChal + `">` +
				`<input type="hidden" name="n" value=""><input type="hidden" name="r" value="` + mRetH + `"></form>`)
			b.WriteString(`<noscript><h2>` + e(t.NoJSHeading) + `</h2><p>` + e(t.NoJSExplain) + `</p><p><a href="` + nojsURL + `">` + e(t.NoJSLink) + `</a></p></noscript>`)
			b.WriteString(`<footer><p>` + e(t.Footer) + `</p></footer></main>`)
			b.WriteString(`<script id="w" type="text/plain">` + workerJS + `</script><script>` + pageJS + `</script></body></html>`)
			arr[d] = compile(b.String())
		}
		ps.challenge = append(ps.challenge, arr)
		ps.wait = append(ps.wait, compile(head+
			`<meta http-equiv="refresh" content="`+mWait+`;url=`+nojsURL+`"><style>`+css+`</style></head><body><main>`+
			`<h1>`+e(t.Heading)+`</h1><p role="status">`+e(t.Wait)+`</p><p><a href="`+nojsURL+`">`+e(t.WaitLink)+`</a></p></main></body></html>`))
		ps.denied = append(ps.denied, compile(head+`<style>`+css+`</style></head><body><main>`+
			`<h1>`+e(t.Heading)+`</h1><p role="alert">`+e(t.Denied)+`</p><p><a href="`+mRetH+`">`+e(t.Retry)+`</a></p></main></body></html>`))
	}
	def := languages[max(langIndex(cfg.Language), 0)]
	msg, _ := json.Marshal(def.JSONMessage)
	ps.json = []byte(`{"error":"challenge_required","message":` + string(msg) + `}` + "\n")
	ps.jsonBusy = []byte(`{"error":"challenge_failed","message":` + string(msg) + `}` + "\n")
	return ps
}
