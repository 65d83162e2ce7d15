package undo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/keymutex"

	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube"
)

// Request asks for one undo of one workload, on behalf of one or more alerts of a
// notification (several alerts about one workload make one undo).
type Request struct {
	Ref kinds.Ref
	// AlertIDs are the firing alert occurrences asking; each causes at most one undo, ever.
	// A request without any (only resolved alerts) only verifies an earlier undo, and
	// never causes one.
	AlertIDs []string
	// Revisions are the revisions the alerts were about ("" when unknown). When every one is
	// known and none is current, the alerts are stale and nothing is done.
	Revisions []string
	// Alert names the first alert, for the record kept on the workload.
	Alert string
	// Started holds when each alert began firing (its startsAt; a zero time is unknown).
	// When every one is known and earlier than the current revision's rollout, by more than
	// StartSkew, undoing that rollout cannot help: see ErrPredatesRollout.
	Started []time.Time
	// UID, when set, is the UID of the workload the alerts were traced to (through a pod's
	// or ReplicaSet's controller reference): a workload of that name with another UID is a
	// different object, and is not touched.
	UID types.UID
	// Reads, when set, holds what was read for this notification already (see Reads); the
	// first attempt uses it.
	Reads *kinds.Reads
}

// Options tune an Undoer.
type Options struct {
	// DryRun sends the patch with dryRun=All: the server validates it, nothing changes.
	DryRun bool
	// Cooldown is the least time between two undos of one workload.
	Cooldown time.Duration
	// MaxAge is the oldest a current revision may be for its rollout to be undone (0: no
	// limit).
	MaxAge time.Duration
	// Backoff paces re-reads after a write conflict; its Steps bound them.
	Backoff wait.Backoff
	// Gate, when set, is asked before each write (see Gate).
	Gate Gate
	// Now is the clock, for tests.
	Now func() time.Time
}

// Change is what an undo did, or would have done: the workload's UID (when it was read;
// Events are attached to it) and the revisions it went from and to.
type Change struct {
	// Ref is the workload the undo was about in the end: the request's, or the owner it
	// led to (see Undo).
	Ref      kinds.Ref
	UID      types.UID
	From, To int64
	DryRun   bool
	// Handled, when the undo ends with ErrAlreadyHandled, lists the request's alert IDs
	// the workload's state records as handled.
	Handled []string
	// Notes and Related are the Gate's (see Admission), from every attempt it admitted: an
	// owner suspended before a write conflicted stays suspended, whatever the next attempt.
	Notes   []string
	Related []corev1.ObjectReference
	// Verified is set when the request settled the verification of an earlier undo
	// instead (see verify), Message then says what was found; From and To are that undo's.
	Verified Result
	Message  string
}

// Undoer rolls workloads back. It is safe for concurrent use.
type Undoer struct {
	env  *kinds.Env
	opts Options
	// locks serialises undos of one workload inside this process, so a burst of duplicate
	// notifications costs one conflict-free write and cheap re-reads instead of a storm of
	// conflicts. Across processes the resourceVersion precondition does the same job. A
	// fixed set of hashed locks keeps memory bounded whatever names alerts carry; two
	// workloads sharing a lock only wait for each other.
	locks keymutex.KeyMutex
}

// NewReads returns an empty kinds.Reads for one notification: what the resolution of its
// alerts reads, the undo uses again.
func (u *Undoer) NewReads() *kinds.Reads { return u.env.NewReads() }

// New returns an Undoer acting through client.
func New(client kube.Client, opts Options) *Undoer {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Backoff.Steps == 0 {
		opts.Backoff = retry.DefaultRetry
	}
	return &Undoer{env: kinds.NewEnv(client), opts: opts, locks: keymutex.NewHashed(64)}
}

// Undo rolls the workload back to its newest earlier revision not marked bad, unless a
// guard says otherwise (the error says which). On a write conflict it reads again and
// decides again, a bounded number of times: the other writer may have been a copy of this
// very alert.
//
// A workload controlled by another object is not written. When that controller leads to a
// workload of a kind the function rolls back (kinds.Owner: a Knative Revision's Deployment
// leads to its Service), the undo acts on that workload instead, and Change.Ref names it.
func (u *Undoer) Undo(ctx context.Context, req Request) (Change, error) {
	for hops := 0; ; hops++ {
		c, err := u.undo(ctx, req)
		var f *followOwner
		if !errors.As(err, &f) {
			return c, err
		}
		if hops == maxOwnerHops {
			return c, fmt.Errorf("%w: %s leads to %s, past %d owners", ErrControllerOwned, req.Ref, f.to.Ref, maxOwnerHops)
		}
		req = f.request(req)
	}
}

// maxOwnerHops bounds how many controllers an undo follows: one for every kind so far.
const maxOwnerHops = 2

// followOwner ends an attempt on a workload whose controller leads to a workload the
// function rolls back: the undo starts again on that one.
type followOwner struct {
	from kinds.Ref
	to   kinds.Target
}

func (f *followOwner) Error() string { return fmt.Sprintf("%s belongs to %s", f.from, f.to.Ref) }

// request is req, about the owner. The alerts' known revisions were of the controlled
// workload, which is one revision of the owner's: the one the controller reference names.
func (f *followOwner) request(req Request) Request {
	out := req
	out.Ref, out.UID, out.Reads = f.to.Ref, f.to.UID, nil
	out.Revisions = make([]string, len(req.Revisions))
	for i, r := range req.Revisions {
		if r != "" {
			out.Revisions[i] = f.to.Revision
		}
	}
	return out
}

// undo is one workload's undo, under its lock.
func (u *Undoer) undo(ctx context.Context, req Request) (Change, error) {
	k, ok := kinds.For(req.Ref.GroupKind())
	if !ok {
		return Change{}, fmt.Errorf("%w: kind %q", ErrUnsupportedKind, req.Ref.Kind)
	}
	var err error
	key := req.Ref.String()
	u.locks.LockKey(key)
	defer func() { _ = u.locks.UnlockKey(key) }()

	var c Change
	// The outcome is the last attempt's error, not what retry.OnError returns: OnError
	// takes any error wrapping context.DeadlineExceeded or Canceled (a client-side timeout)
	// for its own interruption and answers the last retriable error instead, nil here, which
	// would report a timed-out write as a rollback.
	reads := req.Reads
	var done admitted
	_ = retry.OnError(u.opts.Backoff, apierrors.IsConflict, func() error {
		c, err = u.attempt(ctx, k, req, reads, &done)
		reads = nil // after a conflict, read afresh
		return err
	})
	if apierrors.IsConflict(err) {
		err = fmt.Errorf("conflicts exhausted after %d attempts: %w", u.opts.Backoff.Steps, err)
	}
	if done.release != nil {
		// No write of this undo may have been applied: give back what the Gate took, once,
		// without the request's deadline (which may be what failed).
		done.release(context.WithoutCancel(ctx))
	}
	c.DryRun = u.opts.DryRun
	c.Ref = req.Ref
	return c, err
}

// owner is the workload w's controller leads to, as a followOwner error, when that is a
// workload the function rolls back; nil when the controller is of no kinds.Owner. An owner
// that cannot be followed (the chain of controllers ends elsewhere, an object on the way is
// gone, or the function may not read it) refuses the undo as controller-owned: the
// controlled workload is never written.
func (u *Undoer) owner(ctx context.Context, w *kinds.Workload) error {
	c := w.Controller
	o, ok := kinds.OwnerOf(kinds.OwnerGroupKind(c))
	if !ok {
		return nil
	}
	t, err := o.FromOwner(ctx, u.env.Client, w.Ref.Namespace, c)
	switch {
	case err == nil:
		return &followOwner{from: w.Ref, to: t}
	case errors.Is(err, kinds.ErrUnsupportedOwner), errors.Is(err, kinds.ErrNotFound), apierrors.IsForbidden(err):
		return fmt.Errorf("%w: %s is controlled by %s %s %s, which leads to no workload this function can roll back (%v); roll back that owner instead",
			ErrControllerOwned, w.Ref, c.APIVersion, c.Kind, c.Name, err)
	}
	return fmt.Errorf("follow the controller of %s: %w", w.Ref, err)
}

// attempt reads, decides and writes once. done holds what the Gate did in earlier attempts
// of this Undo, and gets this one's.
func (u *Undoer) attempt(ctx context.Context, k kinds.Kind, req Request, reads *kinds.Reads, done *admitted) (Change, error) {
	w, err := k.Load(ctx, u.env, req.Ref.Namespace, req.Ref.Name, reads)
	if err != nil {
		return Change{Notes: done.notes, Related: done.related}, err
	}
	if req.UID != "" && w.UID != req.UID {
		// The object the alert was traced to is gone, and another of the same name took
		// its place: it is not the one the alert is about.
		return Change{}, fmt.Errorf("%w: %s is not the object the alert's pod belongs to (UID %s, want %s)", ErrNotFound, w.Ref, w.UID, req.UID)
	}
	if w.Controller != nil {
		if err := u.owner(ctx, w); err != nil {
			return Change{UID: w.UID, Notes: done.notes, Related: done.related}, err
		}
	}
	// A workload run by one of another kind without being controlled by it (kinds.Follower:
	// an Argo Rollout's workloadRef Deployment) is that one's to undo, as an owner's is.
	if t, ok, err := kinds.Follow(ctx, u.env, w); err != nil {
		return Change{UID: w.UID, Notes: done.notes, Related: done.related}, fmt.Errorf("find the workload that runs %s: %w", w.Ref, err)
	} else if ok {
		return Change{UID: w.UID, Notes: done.notes, Related: done.related}, &followOwner{from: w.Ref, to: t}
	}
	if c, done, err := u.verify(ctx, k, w, req); done {
		return c, err
	}
	from, to, err := u.decide(w, req)
	c := Change{UID: w.UID, From: from.Number, To: to.Number, Notes: done.notes, Related: done.related}
	if err != nil {
		if errors.Is(err, ErrAlreadyHandled) {
			state, _ := readState(w.Annotations) // decide has checked it
			c.Handled = state.handledOf(req.AlertIDs)
		}
		if u.inconsistent(ctx, k, w, err) {
			err = apierrors.NewConflict(schema.GroupResource{Group: w.Ref.Group, Resource: strings.ToLower(w.Ref.Kind) + "s"},
				w.Ref.Name, fmt.Errorf("it changed while its history was read"))
		}
		return c, err
	}
	if u.opts.Gate != nil {
		adm, err := u.opts.Gate.Admit(ctx, Subject{Ref: w.Ref, UID: w.UID, Generation: w.Generation,
			Labels: w.Labels, Annotations: w.Annotations, Also: w.Also, Paid: done.release != nil}, u.opts.DryRun)
		done.add(adm)
		c.Notes, c.Related = done.notes, done.related
		if err != nil {
			return c, err
		}
	}
	// A kind whose restore takes more than one form says which this one takes, in the record
	// and, once it is written, in the answer.
	notes := done.notes
	if d, ok := k.(kinds.Describer); ok {
		notes = append(slices.Clone(notes), d.Describe(w, to))
	}
	state, _ := readState(w.Annotations) // decide has checked it
	at := u.opts.Now().UTC().Truncate(time.Second)
	var pending *Verification
	if _, ok := k.(kinds.Verifier); ok {
		pending = &Verification{At: at, Revision: to.ID, Number: to.Number, From: from.Number, Alerts: fingerprints(req.AlertIDs)}
	}
	next, err := state.after(from.ID, req.AlertIDs, Record{
		At: at, Alert: req.Alert, From: from.Number, To: to.Number, Notes: notes,
	}, pending).encode()
	if err != nil {
		return c, err
	}
	wctx, sent := kube.Track(ctx)
	err = k.Restore(wctx, u.env, w, to, next, u.opts.DryRun)
	if err == nil {
		c.Notes = notes
	}
	if !sent.NotApplied(err) {
		// The write landed, or may have (a timeout, a 5xx): what the Gate took paid for it
		// and stays taken, whatever the next attempts do.
		done.release = nil
	}
	return c, err
}

// admitted is what the Gate did for one Undo, over all its attempts. A later attempt may be
// refused, or find nothing left to do, after an earlier one was admitted and its write
// conflicted; what the earlier admission changed (an owner suspended) stays changed, and
// the result, the Events and the state must still say so.
type admitted struct {
	notes   []string
	related []corev1.ObjectReference
	// release gives back what the Gate took (a budget unit), taken once for the whole Undo:
	// its retries after a conflict, which changed nothing, reuse it rather than take and
	// give back one each. It is cleared once a write may have been applied.
	release func(context.Context)
}

func (a *admitted) add(adm Admission) {
	if a.release == nil {
		a.release = adm.Release
	}
	for _, n := range adm.Notes {
		if !slices.Contains(a.notes, n) {
			a.notes = append(a.notes, n)
		}
	}
	for _, r := range adm.Related {
		if !slices.ContainsFunc(a.related, func(x corev1.ObjectReference) bool {
			return x.APIVersion == r.APIVersion && x.Kind == r.Kind && x.Namespace == r.Namespace && x.Name == r.Name
		}) {
			a.related = append(a.related, r)
		}
	}
}

// inconsistent reports whether a decision not to write may come from reading the workload
// and its history at two different moments. The history is listed just after the workload
// is read, and may already hold what a concurrent writer (another replica undoing this very
// alert) set in motion: entries newer than the workload's revision, or a newest revision
// that no longer matches the template read, so the alert would look stale, or already at
// its target. When that is so and the workload has
// changed since it was read, the attempt counts as a conflict: read both again and decide on
// what is really there. A workload that has not changed (a rollout the controller has not
// recorded yet) keeps the decision.
func (u *Undoer) inconsistent(ctx context.Context, k kinds.Kind, w *kinds.Workload, err error) bool {
	suspect := w.Ahead
	if errors.Is(err, ErrStale) || errors.Is(err, ErrAlreadyAtTarget) || errors.Is(err, ErrRolloutPending) {
		suspect = suspect || len(w.History) > 0 && !kinds.EqualIgnoreHash(w.History[0].Template, w.Template)
	}
	if !suspect {
		return false
	}
	rv, rerr := k.ResourceVersion(ctx, u.env, w.Ref.Namespace, w.Ref.Name)
	return rerr == nil && rv != w.ResourceVersion
}

// decide applies the guards, in order, and picks the revision to restore: it returns the
// current revision and the target, or the reason not to act.
func (u *Undoer) decide(w *kinds.Workload, req Request) (from, to kinds.Revision, err error) {
	// First: whatever else holds, a workload another controller writes is not this
	// function's to write. It is checked on the object read for this very write (a
	// controller reference added since the alert was resolved counts; one added after this
	// read makes the write conflict, and the next attempt reads it).
	if c := w.Controller; c != nil {
		return from, to, fmt.Errorf("%w: %s is controlled by %s %s %s; roll back that owner instead", ErrControllerOwned,
			w.Ref, c.APIVersion, c.Kind, c.Name)
	}
	if w.Annotations[OptOutAnnotation] == "true" {
		return from, to, ErrOptOut
	}
	// The objects the restore writes besides the workload answer to the same two checks.
	for _, o := range w.Also {
		if c := o.Controller; c != nil {
			return from, to, fmt.Errorf("%w: %s, which the undo of %s writes, is controlled by %s %s %s", ErrControllerOwned,
				o.Ref, w.Ref, c.APIVersion, c.Kind, c.Name)
		}
		if o.Annotations[OptOutAnnotation] == "true" {
			return from, to, fmt.Errorf("%w (on %s, which the undo of %s writes)", ErrOptOut, o.Ref, w.Ref)
		}
	}
	state, err := readState(w.Annotations)
	if err != nil {
		return from, to, err
	}
	if state.handled(req.AlertIDs) {
		if l := state.Last; l != nil {
			return from, to, fmt.Errorf("%w (last rollback at %s, from revision %d to %d)", ErrAlreadyHandled, l.At.Format(time.RFC3339), l.From, l.To)
		}
		return from, to, ErrAlreadyHandled
	}
	if w.Paused {
		return from, to, ErrPaused
	}
	if w.Blocked != nil {
		return from, to, w.Blocked
	}
	if len(w.History) == 0 {
		return from, to, ErrNoPreviousRevision
	}
	from = w.History[0]
	if stale(req.Revisions, from.ID) {
		return from, to, fmt.Errorf("%w (alert about %s, current is revision %d, %s)", ErrStale, summary(req.Revisions), from.Number, from.ID)
	}
	if age := u.opts.Now().Sub(from.Created); u.opts.MaxAge > 0 && !from.Created.IsZero() && age > u.opts.MaxAge {
		return from, to, fmt.Errorf("%w: revision %d was rolled out %s ago (at %s), limit %s", ErrTooOld,
			from.Number, age.Round(time.Second), from.Created.UTC().Format(time.RFC3339), u.opts.MaxAge)
	}
	if err := predates(req.Started, w.History); err != nil {
		return from, to, err
	}
	if len(w.History) < 2 {
		return from, to, ErrNoPreviousRevision
	}
	found := false
	for _, r := range w.History[1:] {
		if r.ID != from.ID && !slices.Contains(state.Bad, r.ID) {
			to, found = r, true
			break
		}
	}
	if !found {
		return from, to, ErrNoGoodRevision
	}
	if err := createdBefore(to, from); err != nil {
		return from, to, err
	}
	// The controllers reuse the entry of a template they already have, so the target never
	// holds the current revision's template: a copy of it, written by someone else, would
	// turn the undo into "already at target".
	if kinds.EqualIgnoreHash(to.Template, from.Template) {
		return from, to, fmt.Errorf("%w: revisions %d (%s) and %d (%s) hold the same template", ErrForeignHistory, to.Number, to.ID, from.Number, from.ID)
	}
	if kinds.EqualIgnoreHash(to.Template, w.Template) {
		return from, to, fmt.Errorf("%w (revision %d)", ErrAlreadyAtTarget, to.Number)
	}
	if !kinds.EqualIgnoreHash(from.Template, w.Template) {
		return from, to, ErrRolloutPending
	}
	if state.Last != nil && u.opts.Cooldown > 0 {
		if next := state.Last.At.Add(u.opts.Cooldown); u.opts.Now().Before(next) {
			return from, to, fmt.Errorf("%w: last rollback at %s, next allowed after %s", ErrCooldown,
				state.Last.At.Format(time.RFC3339), next.UTC().Format(time.RFC3339))
		}
	}
	return from, to, nil
}

// createdBefore refuses a target created after the current revision. The controllers number
// an entry when they create it, so an earlier number on a newer object was written by
// someone else: a free number (after an undo renumbered an entry, or pruning) filled in to
// steer the next undo; or, for a StatefulSet or DaemonSet, an entry numbered above the
// current one that the controller then renumbered the current one past.
//
// The exception is a current revision made current again (a rollback to its template),
// which is older than the entries it replaced: the Deployment controller marks its
// ReplicaSet with the numbers it had before (revision-history). Entries made after that
// ReplicaSet was first made were numbered above the number it had then, the first of its
// revision-history: only those are exempt, so the numbers below, freed by pruning or by
// the renumbering itself, cannot be filled in either. (The controller drops the oldest
// numbers of a revision-history past 2,000 characters; the first one left is then higher,
// which can only refuse more.) ControllerRevisions carry no such mark, so after such a
// rollback by other means the next undo of a StatefulSet or DaemonSet is left to people,
// and the message says so. creationTimestamp is the apiserver's, never the writer's.
func createdBefore(to, from kinds.Revision) error {
	if !to.Created.After(from.Created) {
		return nil
	}
	if history := from.Earlier; len(history) > 0 {
		first := slices.Min(history)
		if to.Number > first {
			return nil
		}
		return fmt.Errorf("%w: revision %d (%s) was created at %s, after the current revision %d (%s) was first made, as revision %d, at %s: "+
			"the controller would have numbered it above %d; roll back by hand", ErrForeignHistory,
			to.Number, to.ID, to.Created.UTC().Format(time.RFC3339), from.Number, from.ID, first, from.Created.UTC().Format(time.RFC3339), first)
	}
	return fmt.Errorf("%w: revision %d (%s) was created at %s, after the current revision %d (%s, %s): the controller did not number it, "+
		"or the workload was rolled back to an older revision by other means; roll back by hand", ErrForeignHistory,
		to.Number, to.ID, to.Created.UTC().Format(time.RFC3339), from.Number, from.ID, from.Created.UTC().Format(time.RFC3339))
}

// StartSkew is how much earlier than the current revision's rollout an alert may have
// started and still count as about it: Prometheus stamps startsAt with its own clock, and
// the rollout time is the apiserver's.
const StartSkew = time.Minute

// predates refuses when every alert started before the current revision (history[0]) was
// rolled out, minus StartSkew: the condition existed before the rollout, so undoing it
// cannot help. One alert that started later, or at an unknown time, is reason enough to act.
func predates(started []time.Time, history []kinds.Revision) error {
	if len(started) == 0 || len(history) == 0 {
		return nil
	}
	from := history[0]
	if from.Created.IsZero() {
		return nil
	}
	// A revision made current again by a rollback keeps the creation time of its first rollout, so when it went live is unknown.
	if len(from.Earlier) > 0 || slices.ContainsFunc(history[1:], func(r kinds.Revision) bool { return r.Created.After(from.Created) }) {
		return nil
	}
	latest := started[0]
	for _, t := range started {
		if t.IsZero() {
			return nil
		}
		if t.After(latest) {
			latest = t
		}
	}
	if !latest.Before(from.Created.Add(-StartSkew)) {
		return nil
	}
	return fmt.Errorf("%w: the alert started at %s, revision %d was rolled out at %s (allowed clock skew %s); "+
		"the condition existed before this rollout, so undoing it cannot help", ErrPredatesRollout,
		latest.UTC().Format(time.RFC3339), from.Number, from.Created.UTC().Format(time.RFC3339), StartSkew)
}

// stale reports whether the alerts were all about known revisions other than current.
func stale(revisions []string, current string) bool {
	if len(revisions) == 0 {
		return false
	}
	for _, r := range revisions {
		if r == "" || r == current {
			return false
		}
	}
	return true
}

// summary names a few revisions, and counts the rest: a message must stay short whatever
// the number of alerts.
func summary(revisions []string) string {
	const shown = 3
	s := strings.Join(revisions[:min(shown, len(revisions))], ", ")
	if len(revisions) > shown {
		s += fmt.Sprintf(" and %d more", len(revisions)-shown)
	}
	return s
}
