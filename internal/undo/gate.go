package undo

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

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
	// UID and Generation are the object's as read for this attempt, before its write.
	UID        types.UID
	Generation int64
	// Also are the other objects the undo writes (kinds.Workload.Also): the Gate holds them
	// to its checks as well (a GitOps tool that would revert one).
	Also []kinds.Object
	// Paid is set when an earlier attempt of the same undo was admitted and what the Gate
	// took for it (a budget unit) is still held: that attempt's write was refused with a
	// conflict, so it changed nothing, and this attempt needs nothing more.
	Paid bool
}

// Admission is a Gate's yes.
type Admission struct {
	// Notes are recorded in the state annotation and said in the result: what was done to
	// let the undo last (an owner suspended), or what will supersede it.
	Notes []string
	// Related are objects the Gate changed for this undo (a suspended owner); each gets an
	// Event too.
	Related []corev1.ObjectReference
	// Release gives back what Admit took (nil when it took nothing). The Undoer calls it
	// once, when the undo ends with no write that may have been applied, after however many
	// attempts.
	Release func(context.Context)
}
