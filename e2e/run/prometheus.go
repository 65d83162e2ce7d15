package run

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

// Prometheus is a running Prometheus server, reached through its HTTP API.
type Prometheus struct {
	URL    string
	client *http.Client
	*cluster.Process
}

// PrometheusOptions configure StartPrometheus.
type PrometheusOptions struct {
	Dir string
	// Listen is the address it serves on (its API, and the OTLP receiver pods push to).
	Listen string
	// Interval is both the scrape and the rule evaluation interval.
	Interval time.Duration
	// Targets are the scrape jobs: job name -> host:port.
	Targets map[string]string
	// Alertmanager is the host:port alerts are sent to.
	Alertmanager string
	// RuleFiles are the (rewritten) rule files loaded.
	RuleFiles []string
	// Wrap runs it inside the node's namespaces; HTTP reaches it there.
	Wrap []string
	HTTP *http.Client
}

// StartPrometheus starts the Prometheus server with OTLP ingestion on, and waits until it
// is ready.
func StartPrometheus(ctx context.Context, o PrometheusOptions) (*Prometheus, error) {
	bin, err := cluster.ToolPath("prometheus")
	if err != nil {
		return nil, err
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", o.Interval, o.Interval)
	fmt.Fprintf(&cfg, "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [%q]\n", o.Alertmanager)
	cfg.WriteString("rule_files:\n")
	for _, f := range o.RuleFiles {
		fmt.Fprintf(&cfg, "  - %q\n", f)
	}
	cfg.WriteString("scrape_configs:\n")
	jobs := make([]string, 0, len(o.Targets))
	for job := range o.Targets {
		jobs = append(jobs, job)
	}
	sort.Strings(jobs)
	for _, job := range jobs {
		fmt.Fprintf(&cfg, "  - job_name: %q\n    static_configs:\n      - targets: [%q]\n", job, o.Targets[job])
	}
	path := filepath.Join(o.Dir, "prometheus.yml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		return nil, err
	}
	p := &Prometheus{URL: "http://" + o.Listen, client: o.HTTP}
	p.Process, err = cluster.StartServer(ctx, readyTimeout, func() (cluster.ProcessSpec, error) {
		return cluster.ProcessSpec{Name: "prometheus", LogPath: filepath.Join(o.Dir, "prometheus.log"), Args: append(append([]string{}, o.Wrap...),
			bin, "--config.file", path, "--storage.tsdb.path", filepath.Join(o.Dir, "prometheus-data"),
			"--web.listen-address", o.Listen, "--web.enable-otlp-receiver",
		)}, nil
	}, cluster.HTTPReadyVia(p.client, p.URL+"/-/ready"))
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Stop stops Prometheus.
func (p *Prometheus) Stop() {
	if p != nil {
		p.Process.Stop()
	}
}

// api GETs path with query from Prometheus's HTTP API into data.
func (p *Prometheus) api(ctx context.Context, path string, query url.Values, data any) error {
	// GET: some endpoints (alerts, rules) take no POST.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+path+"?"+query.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s %s: %s", path, query.Encode(), body.Error)
	}
	return json.Unmarshal(body.Data, data)
}

// Series returns the label sets of the series matching selector between start and end.
func (p *Prometheus) Series(ctx context.Context, selector string, start, end time.Time) ([]map[string]string, error) {
	var out []map[string]string
	err := p.api(ctx, "/api/v1/series", url.Values{"match[]": {selector},
		"start": {fmt.Sprint(start.Unix())}, "end": {fmt.Sprint(end.Unix() + 1)}}, &out)
	return out, err
}

// Sample is one raw sample.
type Sample struct {
	Time  time.Time
	Value string
}

// Samples returns the raw samples of each series selector matches over the last window,
// keyed by the series' labels as text.
func (p *Prometheus) Samples(ctx context.Context, selector string, window time.Duration) (map[string][]Sample, error) {
	var data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	q := fmt.Sprintf("%s[%ds]", selector, int(window.Seconds())+1)
	if err := p.api(ctx, "/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	out := map[string][]Sample{}
	for _, r := range data.Result {
		key := fmt.Sprint(r.Metric)
		for _, v := range r.Values {
			ts, _ := v[0].(float64)
			val, _ := v[1].(string)
			out[key] = append(out[key], Sample{Time: time.UnixMilli(int64(ts * 1000)), Value: val})
		}
	}
	return out, nil
}

// FirstSample is the time of the earliest raw sample of any series selector matches over
// the last window, or the zero time.
func (p *Prometheus) FirstSample(ctx context.Context, selector string, window time.Duration) (time.Time, error) {
	all, err := p.Samples(ctx, selector, window)
	if err != nil {
		return time.Time{}, err
	}
	var first time.Time
	for _, samples := range all {
		for _, s := range samples {
			if first.IsZero() || s.Time.Before(first) {
				first = s.Time
			}
		}
	}
	return first, nil
}

// ActiveAlert is one alert of Prometheus's /api/v1/alerts.
type ActiveAlert struct {
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	ActiveAt time.Time         `json:"activeAt"`
}

// Alerts returns the alerts Prometheus holds (pending or firing).
func (p *Prometheus) Alerts(ctx context.Context) ([]ActiveAlert, error) {
	var data struct {
		Alerts []ActiveAlert `json:"alerts"`
	}
	err := p.api(ctx, "/api/v1/alerts", url.Values{}, &data)
	return data.Alerts, err
}

// LoadedRule is an alerting rule as Prometheus loaded it.
type LoadedRule struct {
	File        string            `json:"-"`
	Name        string            `json:"name"`
	Query       string            `json:"query"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Health      string            `json:"health"`
	LastError   string            `json:"lastError"`
}

// Rules returns the alerting rules Prometheus loaded.
func (p *Prometheus) Rules(ctx context.Context) ([]LoadedRule, error) {
	var data struct {
		Groups []struct {
			File  string       `json:"file"`
			Rules []LoadedRule `json:"rules"`
		} `json:"groups"`
	}
	if err := p.api(ctx, "/api/v1/rules", url.Values{"type": {"alert"}}, &data); err != nil {
		return nil, err
	}
	var out []LoadedRule
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			r.File = g.File
			out = append(out, r)
		}
	}
	return out, nil
}

// Node is a PromQL expression as Prometheus's own parser returns it (/api/v1/parse_query,
// the tree its UI explains queries with).
type Node struct {
	Type     string    `json:"type"`
	Name     string    `json:"name"`
	Matchers []Matcher `json:"matchers"`
	Op       string    `json:"op"`
	Grouping []string  `json:"grouping"`
	Without  bool      `json:"without"`
	Expr     *Node     `json:"expr"`
	Param    *Node     `json:"param"`
	LHS      *Node     `json:"lhs"`
	RHS      *Node     `json:"rhs"`
	Bool     bool      `json:"bool"`
	Matching *struct {
		Card    string   `json:"card"`
		Labels  []string `json:"labels"`
		On      bool     `json:"on"`
		Include []string `json:"include"`
	} `json:"matching"`
	Func *struct {
		Name string `json:"name"`
	} `json:"func"`
	Args []*Node `json:"args"`
	Val  string  `json:"val"`
}

// Matcher is a label matcher of a selector.
type Matcher struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Type  string `json:"type"`
}

// Parse parses query with Prometheus's own parser.
func (p *Prometheus) Parse(ctx context.Context, query string) (*Node, error) {
	var n Node
	if err := p.api(ctx, "/api/v1/parse_query", url.Values{"query": {query}}, &n); err != nil {
		return nil, err
	}
	return &n, nil
}

// ShortenedFor is one `for:` of a rule file that ShortenFor changed.
type ShortenedFor struct {
	Alert, From, To string
}

var (
	alertLine = regexp.MustCompile(`^\s*- alert:\s*(\S+)\s*$`)
	forLine   = regexp.MustCompile(`^(\s+for:\s*)(\S+)(\s*)$`)
)

// ShortenFor returns the rule file b with every alert's `for:` longer than max set to max,
// and nothing else changed (line by line, so every comment, expression, label and
// annotation stays byte for byte what ships).
func ShortenFor(b []byte, max time.Duration) ([]byte, []ShortenedFor, error) {
	lines := strings.Split(string(b), "\n")
	var changed []ShortenedFor
	alert := ""
	for i, line := range lines {
		if m := alertLine.FindStringSubmatch(line); m != nil {
			alert = m[1]
			continue
		}
		m := forLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		d, err := time.ParseDuration(m[2])
		if err != nil {
			return nil, nil, fmt.Errorf("rule %s: for: %q: %w", alert, m[2], err)
		}
		if d <= max {
			continue
		}
		to := max.String()
		lines[i] = m[1] + to + m[3]
		changed = append(changed, ShortenedFor{Alert: alert, From: m[2], To: to})
	}
	return []byte(strings.Join(lines, "\n")), changed, nil
}

// ShippedRuleFiles are deploy/prometheus's rule files (not their promtool tests).
func ShippedRuleFiles() ([]string, error) {
	dir, err := RepoFile("deploy/prometheus")
	if err != nil {
		return nil, err
	}
	all, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		return nil, err
	}
	var files []string
	for _, f := range all {
		if !strings.HasSuffix(f, "_test.yml") {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no rule files in %s", dir)
	}
	return files, nil
}

// RuleProblem is a reason a loaded rule can never fire as written against the series
// Prometheus holds.
type RuleProblem struct {
	Rule, Problem string
}

func (p RuleProblem) String() string { return p.Rule + ": " + p.Problem }

// CheckRule checks that everything rule r uses exists in the series Prometheus has held
// since since: each selector's metric and matchers (every matcher's value too when strict),
// each label of by(), on() and group_left()/group_right() on the series below them, and
// each $labels.X of its annotations on what its expression returns. Its expression is
// parsed by Prometheus itself.
func (p *Prometheus) CheckRule(ctx context.Context, r LoadedRule, since time.Time, strict bool) ([]RuleProblem, error) {
	root, err := p.Parse(ctx, r.Query)
	if err != nil {
		return nil, err
	}
	c := &ruleCheck{p: p, since: since, until: time.Now(), strict: strict, rule: r.Name}
	out, err := c.labels(ctx, root)
	if err != nil {
		return nil, err
	}
	var templates []string
	for _, k := range sortedKeys(r.Annotations) {
		templates = append(templates, r.Annotations[k])
	}
	for _, k := range sortedKeys(r.Labels) {
		templates = append(templates, r.Labels[k])
	}
	for _, name := range TemplateLabels(strings.Join(templates, "\n")) {
		if out != nil && !out[name] {
			c.problem("its annotations use $labels.%s, which its expression does not return (it returns %s)", name, setText(out))
		}
	}
	return c.problems, nil
}

var templateLabel = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)|index\s+\$labels\s+"([^"]+)"`)

// TemplateLabels are the labels a Go template of a rule reads from $labels.
func TemplateLabels(text string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range templateLabel.FindAllStringSubmatch(text, -1) {
		name := m[1] + m[2]
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

type ruleCheck struct {
	p            *Prometheus
	since, until time.Time
	strict       bool
	rule         string
	problems     []RuleProblem
}

func (c *ruleCheck) problem(format string, args ...any) {
	c.problems = append(c.problems, RuleProblem{Rule: c.rule, Problem: fmt.Sprintf(format, args...)})
}

// labels returns the label names of the series n returns (nil for a scalar or a string),
// recording a problem for whatever n uses that no series has.
func (c *ruleCheck) labels(ctx context.Context, n *Node) (map[string]bool, error) {
	if n == nil {
		return nil, nil
	}
	switch n.Type {
	case "vectorSelector", "matrixSelector":
		return c.selector(ctx, n)
	case "aggregation":
		in, err := c.labels(ctx, n.Expr)
		if err != nil {
			return nil, err
		}
		if _, err := c.labels(ctx, n.Param); err != nil {
			return nil, err
		}
		for _, g := range n.Grouping {
			if in != nil && !in[g] {
				c.problem("%s %s (%s): no series below it has the label %q (they have %s)", n.Op, byWord(n.Without), strings.Join(n.Grouping, ", "), g, setText(in))
			}
		}
		if n.Without {
			out := copySet(in)
			for _, g := range n.Grouping {
				delete(out, g)
			}
			return out, nil
		}
		return setOf(n.Grouping), nil
	case "binaryExpr":
		lhs, err := c.labels(ctx, n.LHS)
		if err != nil {
			return nil, err
		}
		rhs, err := c.labels(ctx, n.RHS)
		if err != nil {
			return nil, err
		}
		if lhs == nil || rhs == nil { // with a scalar: the vector's labels
			if lhs == nil {
				return rhs, nil
			}
			return lhs, nil
		}
		m := n.Matching
		if m == nil {
			return lhs, nil
		}
		if m.On {
			for _, l := range m.Labels {
				for side, set := range map[string]map[string]bool{"left": lhs, "right": rhs} {
					if !set[l] {
						c.problem("on (%s): the %s side's series have no label %q (they have %s)", strings.Join(m.Labels, ", "), side, l, setText(set))
					}
				}
			}
		}
		// group_left takes its extra labels from the right ("one") side, group_right from
		// the left; the result has the other side's labels.
		one, many := rhs, lhs
		if m.Card == "one-to-many" {
			one, many = lhs, rhs
		}
		for _, l := range m.Include {
			if !one[l] {
				c.problem("group_left/group_right (%s): the other side's series have no label %q (they have %s)", strings.Join(m.Include, ", "), l, setText(one))
			}
		}
		out := copySet(many)
		if m.Card == "one-to-one" {
			if m.On {
				out = setOf(m.Labels)
			} else {
				for _, l := range m.Labels {
					delete(out, l)
				}
			}
		}
		for _, l := range m.Include {
			out[l] = true
		}
		return out, nil
	case "call":
		var out map[string]bool
		for _, a := range n.Args {
			in, err := c.labels(ctx, a)
			if err != nil {
				return nil, err
			}
			if in != nil && out == nil {
				out = copySet(in)
			}
		}
		// The functions that add a label: its name is their second argument.
		if n.Func != nil && (n.Func.Name == "label_replace" || n.Func.Name == "label_join") && len(n.Args) > 1 && out != nil {
			out[n.Args[1].Val] = true
		}
		return out, nil
	case "parenExpr", "unaryExpr", "subquery":
		return c.labels(ctx, n.Expr)
	}
	return nil, nil
}

// selector checks a vector or matrix selector against the series Prometheus holds, and
// returns their labels.
func (c *ruleCheck) selector(ctx context.Context, n *Node) (map[string]bool, error) {
	name := n.Name
	sel := selectorText(n.Matchers)
	byName, err := c.p.Series(ctx, fmt.Sprintf("{__name__=%q}", name), c.since, c.until)
	if err != nil {
		return nil, err
	}
	if len(byName) == 0 {
		c.problem("no series %s in Prometheus since %s", name, c.since.Format(time.TimeOnly))
		return nil, nil
	}
	have := map[string]bool{}
	for _, s := range byName {
		for k := range s {
			if k != "__name__" {
				have[k] = true
			}
		}
	}
	for _, m := range n.Matchers {
		if m.Name != "__name__" && !have[m.Name] {
			c.problem("%s: no series %s has the label %q (they have %s)", sel, name, m.Name, setText(have))
		}
	}
	if !c.strict {
		return have, nil
	}
	matching, err := c.p.Series(ctx, sel, c.since, c.until)
	if err != nil {
		return nil, err
	}
	if len(matching) == 0 {
		c.problem("no series matches %s in Prometheus since %s (series %s exist, none with those values)", sel, c.since.Format(time.TimeOnly), name)
		return nil, nil
	}
	out := map[string]bool{}
	for _, s := range matching {
		for k := range s {
			if k != "__name__" {
				out[k] = true
			}
		}
	}
	return out, nil
}

// selectorText writes matchers as a series selector.
func selectorText(ms []Matcher) string {
	var b bytes.Buffer
	b.WriteString("{")
	for i, m := range ms {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s%s%q", m.Name, m.Type, m.Value)
	}
	b.WriteString("}")
	return b.String()
}

func byWord(without bool) string {
	if without {
		return "without"
	}
	return "by"
}

func setOf(names []string) map[string]bool {
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out
}

func copySet(in map[string]bool) map[string]bool {
	out := map[string]bool{}
	for k := range in {
		out[k] = true
	}
	return out
}

func setText(s map[string]bool) string {
	return "(" + strings.Join(sortedKeys(s), ", ") + ")"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
