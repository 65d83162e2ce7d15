package function

import (
	"os"
	"strings"
	"sync"
	"time"
)

// tokenFile keeps the bearer token read from ROLLBACK_AUTH_TOKEN_FILE current: a mounted
// Secret is updated in place when it is rotated, and the function picks the new token up
// at the next request (one stat per request) instead of needing a restart.
type tokenFile struct {
	path    string
	mu      sync.Mutex
	token   string
	modTime time.Time
}

// get returns the file's token, re-reading it when it changed. If it cannot be read, or is
// empty, the last good token stays in force: a broken rotation must not open the door.
func (t *tokenFile) get() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if info, err := os.Stat(t.path); err == nil && !info.ModTime().Equal(t.modTime) {
		if b, err := os.ReadFile(t.path); err == nil {
			if tok := strings.TrimSpace(string(b)); tok != "" {
				t.token, t.modTime = tok, info.ModTime()
			}
		}
	}
	return t.token
}
