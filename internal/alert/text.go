package alert

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/sre-kit/alert-rollback/internal/clip"
)

// maxText bounds every caller-chosen string (alert names, fingerprints, group keys) the
// function stores, logs or puts in an Event: a notification must not be able to make
// megabytes of logs or push a workload's annotations toward the API server's 256 KiB cap.
const maxText = 128

// Clip returns s made safe to store and log: valid UTF-8 without control characters, in at
// most maxText bytes, a cut marked as clip.String marks it.
func Clip(s string) string { return clip.String(s, maxText) }

// fingerprintLike reports whether fp looks like what Alertmanager sends (16 hex digits) or
// close to it: short, and only letters and digits. Anything else is stored as a hash.
// Not model.ParseFingerprint: it takes hex alone, and other senders' IDs kept on workloads
// would change.
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
