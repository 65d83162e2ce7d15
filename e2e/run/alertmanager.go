package run

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

// Alertmanager is a running Alertmanager.
type Alertmanager struct {
	URL        string
	ConfigPath string
	client     *http.Client
	*cluster.Process
}

// Timers override the route's timers, so a test sees repeats in seconds, not hours.
type Timers struct {
	GroupWait, GroupInterval, RepeatInterval string
}

// AlertmanagerOptions configure StartAlertmanager.
type AlertmanagerOptions struct {
	Dir  string
	Name string
	// ConfigFile is the shipped configuration to start from, a file of deploy/alertmanager:
	// alertmanager.yml (the default) or kube-prometheus.yml.
	ConfigFile string
	// WebhookURL and CredentialsFile replace the two lines of the shipped configuration a
	// user fills in; nothing else of it is changed, unless Timers is set.
	WebhookURL      string
	CredentialsFile string
	Timers          *Timers
	// Wrap, when set, runs Alertmanager inside the node's namespaces (cluster.Cluster.Wrap),
	// where it resolves cluster-local names with the cluster's DNS; HTTP then reaches it
	// there (cluster.Cluster.HTTP).
	Wrap []string
	HTTP *http.Client
}

// ShippedConfig is the path of the repository's Alertmanager configuration.
func ShippedConfig() (string, error) { return RepoFile("deploy/alertmanager/alertmanager.yml") }

// RepoFile is the path of the repository file rel.
func RepoFile(rel string) (string, error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, filepath.FromSlash(rel)), nil
}

var (
	urlLine   = regexp.MustCompile(`(?m)^(\s*- url: )http://alert-rollback\.\S+$`)
	credsLine = regexp.MustCompile(`(?m)^(\s*credentials_file: )\S+$`)
)

// Config is the shipped configuration with the user's two values (and timers) filled in.
func Config(o AlertmanagerOptions) ([]byte, error) {
	if o.ConfigFile == "" {
		o.ConfigFile = "alertmanager.yml"
	}
	path, err := RepoFile("deploy/alertmanager/" + o.ConfigFile)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !urlLine.Match(b) || !credsLine.Match(b) {
		return nil, fmt.Errorf("%s: the url or credentials_file line is not where the tests expect it", path)
	}
	b = urlLine.ReplaceAll(b, []byte("${1}"+o.WebhookURL))
	b = credsLine.ReplaceAll(b, []byte("${1}"+o.CredentialsFile))
	if t := o.Timers; t != nil {
		for key, v := range map[string]string{"group_wait": t.GroupWait, "group_interval": t.GroupInterval, "repeat_interval": t.RepeatInterval} {
			re := regexp.MustCompile(`(?m)^(\s*` + key + `: )\S+$`)
			if !re.Match(b) {
				return nil, fmt.Errorf("%s: no %s to override", path, key)
			}
			b = re.ReplaceAll(b, []byte("${1}"+v))
		}
	}
	return b, nil
}

// StartAlertmanager starts Alertmanager on a free loopback port, alone (no HA gossip).
func StartAlertmanager(ctx context.Context, o AlertmanagerOptions) (*Alertmanager, error) {
	bin, err := cluster.ToolPath("alertmanager")
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = "alertmanager"
	}
	cfg, err := Config(o)
	if err != nil {
		return nil, err
	}
	a := &Alertmanager{ConfigPath: filepath.Join(o.Dir, o.Name+".yml"), client: o.HTTP}
	if a.client == nil {
		a.client = http.DefaultClient
	}
	if err := os.WriteFile(a.ConfigPath, cfg, 0o644); err != nil {
		return nil, err
	}
	a.Process, err = cluster.StartServer(ctx, readyTimeout, func() (cluster.ProcessSpec, error) {
		port, err := cluster.FreePort()
		a.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
		return cluster.ProcessSpec{Name: o.Name, LogPath: filepath.Join(o.Dir, o.Name+".log"), Args: append(append([]string{}, o.Wrap...),
			bin, "--config.file", a.ConfigPath, "--storage.path", filepath.Join(o.Dir, o.Name+"-data"),
			"--web.listen-address", fmt.Sprintf("127.0.0.1:%d", port), "--cluster.listen-address=", "--log.level=debug",
		)}, err
	}, func(ctx context.Context) error { return cluster.HTTPReadyVia(a.client, a.URL+"/-/ready")(ctx) })
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Alert is what Alertmanager's API v2 takes: what Prometheus sends it.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Fire posts alerts to /api/v2/alerts, as Prometheus does. An alert without an end time
// stays firing for resolve_timeout, long enough for any test; Prometheus re-sends firing
// alerts regularly, and callers can call Fire again to do the same.
func (a *Alertmanager) Fire(ctx context.Context, alerts ...Alert) error {
	b, err := json.Marshal(alerts)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL+"/api/v2/alerts", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /api/v2/alerts: %s", resp.Status)
	}
	return nil
}

// Stop stops Alertmanager.
func (a *Alertmanager) Stop() {
	if a != nil {
		a.Process.Stop()
	}
}
