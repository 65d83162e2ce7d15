package undo

import (
	"context"
	"errors"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/sre-kit/alert-rollback/internal/kinds"
)

// Gate is asked once an undo is decided, just before its write: the checks that look
// beyond the workload (the fleet-wide budget, the GitOps tool that owns it). An error
// refuses or fails the undo and the workload is not written; the Admission's Notes and
// Related still count then (an owner suspended before another could not be). The package
// that wires the function implements it; undo only knows when to ask.
type Gate interface {
	Admit(ctx context.Context, w Subject, dryRun bool) (Admission, error)
}

// Subject is the workload an undo is about, as the Gate sees it.
type Subject struct {
	Ref                 kinds.Ref
	Labels, Annotations map[string]string
}

// Admission is a Gate's yes.
type Admission struct {
	// Notes are recorded in the state annotation and said in the result: what was done to
	// let the undo last (an owner suspended), or what will supersede it.
	Notes []string
	// Related are objects the Gate changed for this undo (a suspended owner); each gets an
	// Event too.
	Related []corev1.ObjectReference
	// Release gives back what Admit took when the write did not happen.
	Release func(context.Context)
}

// rejected reports whether the apiserver refused a write, so that it certainly changed
// nothing: a 4xx answer other than a timeout. After a timeout or a transport error the write
// may have landed, and what was taken for it is kept: the budget then errs on the safe side.
func rejected(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	code := status.Status().Code
	return code >= 400 && code < 500 && code != http.StatusRequestTimeout
}
