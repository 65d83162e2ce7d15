package run

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"time"
)

// stepStart names the bad rollout in Phases.
const stepStart = "bad rollout"

// Phase is a span of the loop between two of its steps.
type Phase struct {
	Name     string
	From, To string
}

// Phases are what the timeline's picture draws, one bar each.
var Phases = []Phase{
	{"bad revision's pods fail", stepStart, StepFailing},
	{"the rule matches (pending)", StepFailing, StepPending},
	{"for: (pending to firing)", StepPending, StepFiring},
	{"Alertmanager's group_wait", StepFiring, StepNotified},
	{"Knative wakes the function (0 -> 1)", StepNotified, StepWoken},
	{"pod starts, function rolls back", StepWoken, StepAnswer},
	{"good revision's pods Ready", StepAnswer, StepReady},
	{"alert resolves", StepAnswer, StepResolved},
	{"function scales back to 0", StepAnswer, StepZero},
}

// span is when phase p starts and ends, since the bad rollout.
func (t Timeline) span(p Phase) (from, to time.Duration) {
	from = 0
	if p.From != stepStart {
		from = t.At(p.From)
	}
	return from, t.At(p.To)
}

// SVG draws the timeline: one bar per phase on a common axis of seconds since the bad
// rollout.
func (t Timeline) SVG() []byte {
	const (
		left, right, top, row, bar = 290.0, 70.0, 56.0, 28.0, 18.0
		width                      = 960.0
	)
	end := 0.0
	for _, p := range Phases {
		if _, to := t.span(p); to.Seconds() > end {
			end = to.Seconds()
		}
	}
	tick := 5.0
	if end > 60 {
		tick = 10
	}
	axisEnd := math.Ceil(end/tick) * tick
	if axisEnd == 0 {
		axisEnd = tick
	}
	x := func(s float64) float64 { return left + s*(width-left-right)/axisEnd }
	height := top + row*float64(len(Phases)) + 40
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="13">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="15" font-weight="bold">%s</text>`+"\n",
		html.EscapeString(fmt.Sprintf("%s: bad rollout -> healthy in %.1f s (Deployment %s)", t.Alert, t.Healthy().Seconds(), t.Deployment)))
	fmt.Fprintf(&b, `<text x="10" y="40" fill="#555">%s</text>`+"\n", html.EscapeString("seconds since kubectl applied the bad revision; times from Prometheus, Alertmanager, the API and the function's log"))
	for s := 0.0; s <= axisEnd; s += tick {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/>`+"\n", x(s), top-4, x(s), height-30)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%.0f s</text>`+"\n", x(s), height-14, s)
	}
	colors := []string{"#d9534f", "#f0ad4e", "#f0ad4e", "#5bc0de", "#337ab7", "#5cb85c", "#5cb85c", "#9b59b6", "#95a5a6"}
	for i, p := range Phases {
		y := top + row*float64(i)
		from, to := t.span(p)
		fmt.Fprintf(&b, `<text x="10" y="%.1f">%s</text>`+"\n", y+bar-4, html.EscapeString(p.Name))
		if from < 0 || to < 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#a00">not measured</text>`+"\n", left, y+bar-4)
			continue
		}
		w := math.Max(x(to.Seconds())-x(from.Seconds()), 1.5)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.0f" fill="%s" rx="2"/>`+"\n", x(from.Seconds()), y, w, bar, colors[i%len(colors)])
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#333">%.1f s</text>`+"\n", x(from.Seconds())+w+4, y+bar-4, (to - from).Seconds())
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}
