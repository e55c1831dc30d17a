package challenge

// texts are the strings of the challenge pages of one language. Add a
// language by adding an entry to languages; everything else follows.
// {delay} is replaced with the no-JavaScript wait in seconds when the pages
// are built.
type texts struct {
	Code        string // BCP 47 tag for the lang attribute
	Title       string
	Heading     string
	Explain     string
	Working     string // live region while the browser computes
	Done        string // live region when solved
	Failed      string // live region when the browser cannot run the check
	NoJSHeading string
	NoJSExplain string
	NoJSLink    string
	AltLink     string // link to the no-JavaScript path for everyone
	Wait        string // page when the no-JavaScript answer came too early
	WaitLink    string
	Denied      string // page when an answer is rejected
	Retry       string
	Footer      string
	JSONMessage string
}

var languages = []texts{{
	Code:        "en",
	Title:       "Checking your browser",
	Heading:     "Checking that you are a person",
	Explain:     "This site is protecting itself from a flood of automated traffic. Your browser is solving a small puzzle; this usually takes a second or two. You will then continue to the page you asked for.",
	Working:     "Checking your browser, please wait…",
	Done:        "Check complete. Continuing to the site…",
	Failed:      "Your browser could not run the check. Use the link below to continue without JavaScript.",
	NoJSHeading: "JavaScript is off",
	NoJSExplain: "You can continue without JavaScript. The page will reload by itself in {delay} seconds; if it does not, follow the link after that time.",
	NoJSLink:    "Continue to the site",
	AltLink:     "Continue without JavaScript (takes {delay} seconds)",
	Wait:        "Please wait a few more seconds. This page reloads by itself.",
	WaitLink:    "Try again now",
	Denied:      "The check did not succeed. It may have expired or been used already.",
	Retry:       "Start again",
	Footer:      "Protected by Levee. Your browser keeps a cookie that shows the check was passed; it expires after a while.",
	JSONMessage: "This site is protected against automated traffic. Open it in a web browser to continue, or ask the site operator to allow your client.",
}, {
	Code:        "de",
	Title:       "Browser wird geprüft",
	Heading:     "Wir prüfen, ob Sie ein Mensch sind",
	Explain:     "Diese Website schützt sich gerade vor einer Flut automatisierter Anfragen. Ihr Browser löst eine kleine Aufgabe; das dauert meist ein bis zwei Sekunden. Danach geht es weiter zur gewünschten Seite.",
	Working:     "Ihr Browser wird geprüft, bitte warten…",
	Done:        "Prüfung abgeschlossen. Weiter zur Website…",
	Failed:      "Ihr Browser konnte die Prüfung nicht ausführen. Nutzen Sie den Link unten, um ohne JavaScript fortzufahren.",
	NoJSHeading: "JavaScript ist ausgeschaltet",
	NoJSExplain: "Sie können ohne JavaScript fortfahren. Die Seite lädt in {delay} Sekunden von selbst neu; falls nicht, folgen Sie danach dem Link.",
	NoJSLink:    "Weiter zur Website",
	AltLink:     "Ohne JavaScript fortfahren (dauert {delay} Sekunden)",
	Wait:        "Bitte warten Sie noch einige Sekunden. Diese Seite lädt von selbst neu.",
	WaitLink:    "Jetzt erneut versuchen",
	Denied:      "Die Prüfung war nicht erfolgreich. Sie ist vielleicht abgelaufen oder wurde schon verwendet.",
	Retry:       "Neu beginnen",
	Footer:      "Geschützt durch Levee. Ihr Browser speichert ein Cookie, das die bestandene Prüfung belegt; es läuft nach einer Weile ab.",
	JSONMessage: "Diese Website ist gegen automatisierte Anfragen geschützt. Öffnen Sie sie in einem Webbrowser oder bitten Sie den Betreiber, Ihren Client freizuschalten.",
}, {
	Code:        "fr",
	Title:       "Vérification de votre navigateur",
	Heading:     "Nous vérifions que vous êtes une personne",
	Explain:     "Ce site se protège d'un afflux de trafic automatisé. Votre navigateur résout une petite énigme ; cela prend en général une ou deux secondes. Vous accéderez ensuite à la page demandée.",
	Working:     "Vérification de votre navigateur, veuillez patienter…",
	Done:        "Vérification terminée. Redirection vers le site…",
	Failed:      "Votre navigateur n'a pas pu effectuer la vérification. Utilisez le lien ci-dessous pour continuer sans JavaScript.",
	NoJSHeading: "JavaScript est désactivé",
	NoJSExplain: "Vous pouvez continuer sans JavaScript. La page se rechargera d'elle-même dans {delay} secondes ; sinon, suivez le lien après ce délai.",
	NoJSLink:    "Continuer vers le site",
	AltLink:     "Continuer sans JavaScript (prend {delay} secondes)",
	Wait:        "Veuillez patienter encore quelques secondes. Cette page se recharge d'elle-même.",
	WaitLink:    "Réessayer maintenant",
	Denied:      "La vérification a échoué. Elle a peut-être expiré ou déjà été utilisée.",
	Retry:       "Recommencer",
	Footer:      "Protégé par Levee. Votre navigateur conserve un cookie attestant la vérification ; il expire au bout d'un certain temps.",
	JSONMessage: "Ce site est protégé contre le trafic automatisé. Ouvrez-le dans un navigateur web ou demandez à l'exploitant d'autoriser votre client.",
}}

func langIndex(code string) int {
	for i := range languages {
		if languages[i].Code == code {
			return i
		}
	}
	return -1
}

func languageCodes() []string {
	out := make([]string, len(languages))
	for i := range languages {
		out[i] = languages[i].Code
	}
	return out
}

// pickLanguage returns the index of the first language in an
// Accept-Language header that has a translation, or def. It ignores q
// values (browsers list languages in preference order) and allocates
// nothing.
func pickLanguage(accept []byte, def int) int {
	for len(accept) > 0 {
		var tok []byte
		if i := indexByte(accept, ','); i >= 0 {
			tok, accept = accept[:i], accept[i+1:]
		} else {
			tok, accept = accept, nil
		}
		for len(tok) > 0 && (tok[0] == ' ' || tok[0] == '\t') {
			tok = tok[1:]
		}
		if len(tok) < 2 || (len(tok) > 2 && tok[2] != '-' && tok[2] != ';' && tok[2] != ' ' && tok[2] != '_') {
			continue
		}
		a, b := tok[0]|0x20, tok[1]|0x20
		for i := range languages {
			c := languages[i].Code
			if c[0] == a && c[1] == b {
				return i
			}
		}
	}
	return def
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
