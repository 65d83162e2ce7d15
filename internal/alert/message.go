// Package alert decodes Alertmanager's webhook notification and decides which of its alerts
// ask for a rollback. It knows nothing about Kubernetes.
package alert

import (
	"strconv"
	"time"

	"github.com/prometheus/common/model"
)

// Message is the body Alertmanager's webhook receiver POSTs (notify/webhook, version "4").
// Fields Alertmanager adds in later versions (notification_reason, routeLabels, ...) are
// ignored, so a newer Alertmanager does not break delivery.
type Message struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Receiver          string            `json:"receiver"`
	Status            string            `json:"status"`
	Alerts            []Alert           `json:"alerts"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
}

// Alert is one alert of a notification.
type Alert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// Firing reports whether the alert is still active; resolved alerts never cause an undo.
func (a Alert) Firing() bool { return a.Status == "firing" }

// Resolved reports whether Alertmanager says the alert has ended (send_resolved): it only
// ever verifies an earlier undo.
func (a Alert) Resolved() bool { return a.Status == "resolved" }

// Name is the alert's alertname label.
func (a Alert) Name() string { return a.Labels["alertname"] }

// ID identifies one occurrence of an alert: the same alert firing again later (a new
// startsAt) is a new occurrence and may cause a new undo, while Alertmanager's re-sends and
// an HA pair's duplicates of one occurrence share the ID. Alertmanager always sends a
// fingerprint; for other senders it is derived from the labels as Alertmanager derives it.
// It is short whatever the caller sends (a fingerprint that does not look like one is
// hashed), because IDs are kept on the workload.
func (a Alert) ID() string {
	fp := a.Fingerprint
	switch {
	case fp == "":
		fp = labelsFingerprint(a.Labels)
	case !fingerprintLike(fp):
		fp = shortHash(fp)
	}
	return fp + "@" + strconv.FormatInt(a.StartsAt.Unix(), 10)
}

// labelsFingerprint is the fingerprint Alertmanager gives an alert with these labels, so an
// occurrence sent without one shares its ID with the same occurrence sent by Alertmanager.
func labelsFingerprint(labels map[string]string) string {
	ls := make(model.LabelSet, len(labels))
	for k, v := range labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls.Fingerprint().String()
}
