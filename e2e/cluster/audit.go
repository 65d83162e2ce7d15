package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// auditPolicy records every request at the Metadata level (who, what, which object, the
// status; no bodies) once it is complete. Health checks are left out.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: None
    nonResourceURLs: ["/healthz*", "/readyz*", "/livez*"]
  - level: Metadata
`

// auditFlags writes the policy and returns the apiserver flags that turn the audit log on.
func (c *Cluster) auditFlags() ([]string, error) {
	policy := filepath.Join(c.Dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		return nil, err
	}
	c.auditLog = filepath.Join(c.Dir, "audit.log")
	return []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + c.auditLog,
		"--audit-log-format=json",
		// Each event is written before the request's answer is complete, so a request
		// that has been answered is in the log.
		"--audit-log-mode=blocking",
		"--audit-log-maxsize=0",
	}, nil
}

// AuditEvent is one request the API server answered, as its audit log records it.
type AuditEvent struct {
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	UserAgent  string `json:"userAgent"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	// Received is when the API server got the request; Completed when it had answered.
	Received  time.Time `json:"requestReceivedTimestamp"`
	Completed time.Time `json:"stageTimestamp"`
}

// Resource is the resource the request was about ("" for non-resource URLs).
func (e AuditEvent) Resource() string {
	if e.ObjectRef == nil {
		return ""
	}
	return e.ObjectRef.Resource
}

// AuditMark is a point in the audit log: AuditSince returns what comes after it.
type AuditMark int64

var errNoAudit = errors.New("the control plane was started without Options.Audit")

// AuditMark returns the current end of the audit log.
func (c *Cluster) AuditMark() (AuditMark, error) {
	if c.auditLog == "" {
		return 0, errNoAudit
	}
	info, err := os.Stat(c.auditLog)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return AuditMark(info.Size()), nil
}

// AuditSince returns the requests answered after mark, up to now. To know the log holds
// every request answered so far, it makes one request of its own (a read of a ConfigMap
// that does not exist, with a unique name) and waits until that appears; it is not
// returned.
func (c *Cluster) AuditSince(ctx context.Context, mark AuditMark) ([]AuditEvent, error) {
	if c.auditLog == "" {
		return nil, errNoAudit
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	sentinel := "audit-sentinel-" + hex.EncodeToString(b)
	_, err := c.Clientset.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(ctx, sentinel, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("audit sentinel: %v", err)
	}
	var events []AuditEvent
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		var found bool
		events, found, err = readAudit(c.auditLog, int64(mark), sentinel)
		return found, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", c.auditLog, err)
	}
	return events, nil
}

// readAudit parses the log from offset up to the sentinel's event.
func readAudit(path string, offset int64, sentinel string) ([]AuditEvent, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, false, err
	}
	var out []AuditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e AuditEvent
		if err := json.Unmarshal(line, &e); err != nil {
			// The last line may still be being written.
			return out, false, nil
		}
		if e.ObjectRef != nil && e.ObjectRef.Name == sentinel {
			return out, true, nil
		}
		out = append(out, e)
	}
	return out, false, sc.Err()
}
