package function

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
)

// tokenFile keeps the bearer token read from ROLLBACK_AUTH_TOKEN_FILE current: a mounted
// Secret is updated in place when it is rotated. The file is read on every request (a few
// microseconds for a small file), because neither its modification time nor its inode is a
// reliable sign of change: a rotation can keep both.
type tokenFile struct {
	path  string
	mu    sync.Mutex
	token string
}

// get returns the file's token. A deleted file lets nobody in: the Secret was removed. An
// empty or unreadable file keeps the last good token in force: a rotation caught halfway
// must neither open the door nor lock Alertmanager out.
func (t *tokenFile) get() string {
	b, err := os.ReadFile(t.path)
	t.mu.Lock()
	defer t.mu.Unlock()
	switch tok := strings.TrimSpace(string(b)); {
	case errors.Is(err, fs.ErrNotExist):
		t.token = ""
	case err == nil && tok != "":
		t.token = tok
	}
	return t.token
}
