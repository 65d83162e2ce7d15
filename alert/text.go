package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxText bounds every caller-chosen string (alert names, fingerprints, group keys) the
// function stores, logs or puts in an Event: a notification must not be able to make
// megabytes of logs or push a workload's annotations toward the API server's 256 KiB cap.
const maxText = 128

// MaxMessage bounds a result's message: it may quote a few names of the cluster (each up to
// 253 bytes) and must still stay a line, whatever the caller sent.
const MaxMessage = 1024

// Clip returns s made safe to store and log: control characters replaced, and cut to at
// most maxText bytes (on a rune boundary) with "…" marking the cut.
func Clip(s string) string { return ClipTo(s, maxText) }

// ClipTo is Clip with a bound of max bytes.
func ClipTo(s string, max int) string {
	if len(s) <= max && strings.IndexFunc(s, unicode.IsControl) < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "�") {
		if unicode.IsControl(r) {
			r = '�'
		}
		if b.Len()+utf8.RuneLen(r) > max-len("…") {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// fingerprintLike reports whether fp looks like what Alertmanager sends (16 hex digits) or
// close to it: short, and only letters and digits. Anything else is stored as a hash.
func fingerprintLike(fp string) bool {
	if fp == "" || len(fp) > 32 {
		return false
	}
	for _, r := range fp {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}
