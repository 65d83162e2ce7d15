// Package budget bounds how many rollbacks the function makes across all workloads, all
// notifications and all of its replicas: at most N in any window (ROLLBACK_BUDGET, "5/1h").
//
// The per-notification limit (ROLLBACK_MAX_TARGETS) cannot see a storm that Alertmanager
// delivers as several notifications, to several replicas. The budget can, because its state
// is one object every replica shares: a coordination.k8s.io/v1 Lease in the function's own
// namespace. A unit is taken before the undo by writing the Lease under a resourceVersion
// precondition, so of two replicas racing for the last unit one write fails with a conflict;
// that replica reads again and is refused. An undo that then certainly did not happen gives
// its unit back.
//
// Each unit names the workload it paid for, so the Lease also enforces the per-workload
// cooldown (ROLLBACK_COOLDOWN): the state kept on a workload can be deleted by whoever may
// edit the workload, the Lease cannot.
package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/sre-kit/alert-rollback/internal/kube"
)

// LeaseName is the Lease holding the budget. It is fixed because the Role names it
// (resourceNames), and kservice.yaml ships it.
const LeaseName = "alert-rollback-budget"

// StateAnnotation holds the units spent in the current window, as JSON, on the Lease.
const StateAnnotation = "alert-rollback.dev/budget"

// Default is the budget when ROLLBACK_BUDGET is unset: five rollbacks an hour across the
// cluster. A real incident that needs more than five automatic rollbacks in an hour is not
// a set of bad rollouts but a cluster problem, and people should be looking.
const Default = "5/1h"

// maxUnits bounds N, and the units the Lease keeps: every unit is one entry on the Lease,
// and an object's annotations may hold 256 KiB in all.
const maxUnits = 1000

// MaxSkew is how far ahead of this replica's clock a unit may be dated and still count: the
// replicas' clocks may disagree by that much. A unit dated further ahead was not written by
// a replica with a sane clock; counted, it would hold a unit (or a workload's cooldown)
// until that date. It is ignored, and dropped at the next write.
const MaxSkew = time.Minute

var (
	// ErrExhausted marks a refusal: the window's units are all spent. The error that wraps
	// it is an *ExhaustedError, which says how many and when the window frees up.
	ErrExhausted = errors.New("rollback budget exhausted (ROLLBACK_BUDGET)")
	// ErrNoLease means the Lease is missing and the function may not create it.
	ErrNoLease = errors.New("the budget Lease " + LeaseName + " is missing; apply it from kservice.yaml")
	// ErrCooldown marks a refusal: the Lease records an undo of the same workload within
	// the cooldown. The error that wraps it is a *CooldownError.
	ErrCooldown = errors.New("rolled back too recently (ROLLBACK_COOLDOWN), as the budget Lease records")
	// ErrContended means the Lease changed under every one of the bounded attempts to
	// write it (another writer kept getting there first). It does not wrap the apiserver's
	// conflict, so that nothing retries around the budget's own retries.
	ErrContended = errors.New("the budget Lease kept changing")
)

// Spec is a budget: at most Units rollbacks in any Window. The zero Spec is off.
type Spec struct {
	Units  int
	Window time.Duration
}

// Off reports whether the budget is disabled.
func (s Spec) Off() bool { return s.Units == 0 }

func (s Spec) String() string {
	if s.Off() {
		return "off"
	}
	return fmt.Sprintf("%d/%s", s.Units, s.Window)
}

// Parse reads "N/WINDOW" (a Go duration: "5/1h", "3/30m") or "off".
func Parse(v string) (Spec, error) {
	v = strings.TrimSpace(v)
	if v == "off" {
		return Spec{}, nil
	}
	n, w, ok := strings.Cut(v, "/")
	if !ok {
		return Spec{}, fmt.Errorf("%q: want N/WINDOW, such as %s, or off", v, Default)
	}
	units, err := strconv.Atoi(n)
	if err != nil || units < 1 || units > maxUnits {
		return Spec{}, fmt.Errorf("%q: N must be a whole number from 1 to %d", v, maxUnits)
	}
	window, err := time.ParseDuration(w)
	if err != nil || window < time.Second {
		return Spec{}, fmt.Errorf("%q: WINDOW must be a duration of at least 1s, such as 1h", v)
	}
	return Spec{Units: units, Window: window}, nil
}

// ExhaustedError is a refusal by the budget.
type ExhaustedError struct {
	Spec  Spec
	Spent int
	// FreesAt is when the oldest unit of the window expires and the next rollback may go.
	FreesAt time.Time
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("%v: %d of %d rollbacks spent in the last %s; the next is allowed after %s",
		ErrExhausted, e.Spent, e.Spec.Units, e.Spec.Window, e.FreesAt.UTC().Format(time.RFC3339))
}

func (e *ExhaustedError) Unwrap() error { return ErrExhausted }

// CooldownError is a refusal by the cooldown the Lease enforces.
type CooldownError struct {
	// For is the workload, At when its last undo was paid for.
	For string
	At  time.Time
	// Until is when the cooldown ends.
	Until time.Time
}

func (e *CooldownError) Error() string {
	return fmt.Sprintf("%v: %s was rolled back at %s; the next is allowed after %s", ErrCooldown, e.For,
		e.At.UTC().Format(time.RFC3339), e.Until.UTC().Format(time.RFC3339))
}

func (e *CooldownError) Unwrap() error { return ErrCooldown }

// Unit is one spent rollback, as kept on the Lease.
type Unit struct {
	// ID tells units apart, so that giving one back removes exactly it.
	ID string    `json:"id"`
	At time.Time `json:"at"`
	// For names the workload the undo was for, as the undo resolved it ("Deployment
	// shop/web"), never from the alert's labels: the cooldown is kept per For.
	For string `json:"for,omitempty"`
	// UID and Generation are the workload's as the undo read it, before its write.
	UID        string `json:"uid,omitempty"`
	Generation int64  `json:"generation,omitempty"`
}

// Workload is what a unit is taken for: the workload as the undo read it.
type Workload struct {
	// Name names it ("Deployment shop/web"); the cooldown is kept per Name.
	Name string
	// UID and Generation are the object's, both set by the apiserver: an undo that landed
	// changed spec.template, and with it the generation.
	UID        string
	Generation int64
}

// state is the Lease's annotation.
type state struct {
	Spent []Unit `json:"spent"`
}

// Budget takes and gives back units. It is safe for concurrent use.
type Budget struct {
	leases    kube.Leases
	namespace string
	spec      Spec
	// mu guards last, the Lease as this process last wrote or read it. A write starts from
	// it instead of reading the Lease first: the write carries its resourceVersion, so if
	// anyone wrote since, the apiserver refuses it and the Lease is read again. A decision
	// not to write (a refusal) is never made on it: that is checked on a fresh read.
	mu   sync.Mutex
	last *coordinationv1.Lease
	// Backoff paces re-reads after a conflict; its Steps bound them.
	backoff  wait.Backoff
	cooldown time.Duration
	now      func() time.Time
}

// Options tune a Budget; the zero value is fine.
type Options struct {
	// Backoff paces re-reads after a conflict; its Steps bound the attempts of each Take
	// or Return (two requests each at most: read, write).
	Backoff wait.Backoff
	// Cooldown, when set, refuses a Take for a workload whose last unit is more recent
	// (ROLLBACK_COOLDOWN); units are kept on the Lease that long, even past the window.
	Cooldown time.Duration
	Now      func() time.Time
}

// New returns the budget spec, kept in the Lease of namespace, read and written through
// leases (the Leases of that namespace): the function's own client's, or client-go's
// CoordinationV1().Leases(namespace), which has the same methods.
func New(leases kube.Leases, namespace string, spec Spec, o Options) *Budget {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Backoff.Steps == 0 {
		// Every replica may contend in a storm: more attempts than client-go's default of
		// 5, spread with jitter, still bounded (about a second in all).
		o.Backoff = wait.Backoff{Steps: 10, Duration: 10 * time.Millisecond, Factor: 1.5, Jitter: 0.5}
	}
	return &Budget{leases: leases, namespace: namespace, spec: spec, backoff: o.Backoff, cooldown: o.Cooldown, now: o.Now}
}

// Spec is the budget's setting.
func (b *Budget) Spec() Spec { return b.spec }

// Take spends one unit for the workload named what, or returns an *ExhaustedError, or a
// *CooldownError when the Lease holds a unit for what within the cooldown. With dryRun it
// only checks: a dry run spends nothing. The returned Unit is what Return gives
// back. A disabled budget always allows and returns a zero Unit.
//
// Every call spends a unit of its own, named at random, even for an undo another replica is
// attempting for the same alerts: when one of them loses the race and gives its unit back,
// the unit that paid for the undo that landed stays. (A unit named after the alerts, shared
// by such attempts, was tried: the loser then gave back the winner's unit, and a storm got
// one undo more than the budget; e2e/guards' TestBudgetStorm caught it.) The price is that a
// unit whose write landed but whose answer was lost stays spent when the notification is
// sent again: the count errs on the safe side. With a cooldown, a Take for a workload with a
// unit on the Lease is refused instead, unless TakeFor can tell that unit's write did not
// land.
func (b *Budget) Take(ctx context.Context, what string, dryRun bool) (Unit, error) {
	return b.TakeFor(ctx, Workload{Name: what}, dryRun)
}

// TakeFor is Take for a workload known by its UID and generation too: a unit on the Lease
// for the very object at the very generation w was read at does not count for the cooldown.
// Its undo's write did not land (it would have changed the generation): it failed in a way
// that may have landed, kept its unit, and this is the notification sent again.
func (b *Budget) TakeFor(ctx context.Context, w Workload, dryRun bool) (Unit, error) {
	if b == nil || b.spec.Off() {
		return Unit{}, nil
	}
	var u Unit
	err := b.update(ctx, func(s *state, now time.Time) (bool, error) {
		u = Unit{}
		if err := b.coolingDown(s, w, now); err != nil {
			return false, err
		}
		if inWindow := b.inWindow(s, now); len(inWindow) >= b.spec.Units {
			return false, &ExhaustedError{Spec: b.spec, Spent: len(inWindow), FreesAt: inWindow[0].At.Add(b.spec.Window)}
		}
		if dryRun {
			return false, nil
		}
		u = Unit{ID: rand.String(10), At: now, For: w.Name, UID: w.UID, Generation: w.Generation}
		s.Spent = append(s.Spent, u)
		return true, nil
	})
	return u, err
}

// Return gives back a unit taken by Take, after the undo it paid for did not happen. A unit
// already out of the window is simply gone.
func (b *Budget) Return(ctx context.Context, u Unit) error {
	if b == nil || b.spec.Off() || u.ID == "" {
		return nil
	}
	return b.update(ctx, func(s *state, _ time.Time) (bool, error) {
		i := slices.IndexFunc(s.Spent, func(x Unit) bool { return x.ID == u.ID })
		if i < 0 {
			return false, nil
		}
		s.Spent = slices.Delete(s.Spent, i, i+1)
		return true, nil
	})
}

// Spent counts the units spent in the current window, without changing anything.
func (b *Budget) Spent(ctx context.Context) (int, error) {
	var n int
	err := b.update(ctx, func(s *state, now time.Time) (bool, error) {
		n = len(b.inWindow(s, now))
		return false, nil
	})
	return n, err
}

// inWindow returns the units of s spent in the window that ends now, oldest first.
func (b *Budget) inWindow(s *state, now time.Time) []Unit {
	i := slices.IndexFunc(s.Spent, func(u Unit) bool { return now.Before(u.At.Add(b.spec.Window)) })
	if i < 0 {
		return nil
	}
	return s.Spent[i:]
}

// coolingDown refuses w when s holds a unit for it within the cooldown, unless that unit
// is for the very object and generation w was read at (see TakeFor).
func (b *Budget) coolingDown(s *state, w Workload, now time.Time) error {
	if b.cooldown <= 0 || w.Name == "" {
		return nil
	}
	for _, u := range slices.Backward(s.Spent) {
		if u.For != w.Name || !now.Before(u.At.Add(b.cooldown)) {
			continue
		}
		if u.UID != "" && u.UID == w.UID && u.Generation == w.Generation {
			continue // its write did not land: the object is as it was then
		}
		return &CooldownError{For: w.Name, At: u.At, Until: u.At.Add(b.cooldown)}
	}
	return nil
}

// prune drops from s the units that count no more: those out of both the window and the
// cooldown, and those dated more than MaxSkew ahead of now.
func (b *Budget) prune(s *state, now time.Time) {
	keep := max(b.spec.Window, b.cooldown)
	s.Spent = slices.DeleteFunc(s.Spent, func(u Unit) bool {
		return !now.Before(u.At.Add(keep)) || u.At.After(now.Add(MaxSkew))
	})
}

// update reads the Lease, lets change decide on its state (with the units that count no
// more already dropped: see prune), and writes it back under the resourceVersion it read
// when change says so. A conflict (another replica wrote first) or a lost race to create the
// Lease means reading and deciding again, a bounded number of times.
func (b *Budget) update(ctx context.Context, change func(*state, time.Time) (bool, error)) error {
	attempt := func(cached *coordinationv1.Lease) error {
		leases := b.leases
		lease, missing := cached, false
		if lease == nil {
			var err error
			lease, err = leases.Get(ctx, LeaseName, metav1.GetOptions{})
			missing = apierrors.IsNotFound(err)
			if err != nil && !missing {
				return fmt.Errorf("read the budget Lease %s/%s: %w", b.namespace, LeaseName, err)
			}
			if missing {
				lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: b.namespace,
					Labels: map[string]string{"app.kubernetes.io/name": "alert-rollback"}}}
			}
		}
		s, err := readState(lease)
		if err != nil {
			return err
		}
		now := b.now()
		b.prune(&s, now)
		write, err := change(&s, now)
		if cached != nil && (err != nil || !write) {
			// Not a write, so nothing would catch a stale copy: decide on a fresh read.
			return errStaleCopy
		}
		if err != nil || !write {
			if !missing {
				b.remember(lease)
			}
			return err
		}
		if err := writeState(lease, s, b.spec, now); err != nil {
			return err
		}
		var written *coordinationv1.Lease
		if missing {
			written, err = leases.Create(ctx, lease, metav1.CreateOptions{})
			if apierrors.IsForbidden(err) {
				return fmt.Errorf("%w: %w", ErrNoLease, err)
			}
		} else {
			// Update sends the resourceVersion read above: the apiserver refuses the write
			// with a conflict if anyone wrote the Lease since.
			written, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
		}
		if err != nil {
			b.remember(nil)
			return fmt.Errorf("write the budget Lease %s/%s: %w", b.namespace, LeaseName, err)
		}
		b.remember(written)
		return nil
	}
	// The result is the last attempt's error, not retry.OnError's: OnError takes an error
	// wrapping a context's deadline for its own interruption and answers the last retriable
	// error instead (nil after a first attempt that timed out), which would count a unit
	// never taken as taken.
	cached := b.copyOfLast()
	var err error
	_ = retry.OnError(b.backoff, retryable, func() error {
		err = attempt(cached)
		cached = nil // after a conflict, or a refusal on the copy: read the Lease
		return err
	})
	if errors.Is(err, errStaleCopy) {
		// A backoff of one step left no room for the fresh read.
		err = attempt(nil)
	}
	if retryable(err) {
		// %v, not %w: the undo retries on a conflict of its own, and must not take this one
		// for it, or each of its attempts would run all of these again.
		return fmt.Errorf("%w (%d attempts): %v", ErrContended, b.backoff.Steps, err)
	}
	return err
}

// errStaleCopy asks for a fresh read: a decision not to write was made on the remembered
// copy of the Lease.
var errStaleCopy = errors.New("decided on the remembered Lease")

// remember keeps l as the Lease last seen (nil forgets it).
func (b *Budget) remember(l *coordinationv1.Lease) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l != nil && l.ResourceVersion == "" {
		l = nil // a copy the apiserver did not give cannot guard a write
	}
	b.last = l
}

func (b *Budget) copyOfLast() *coordinationv1.Lease {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last == nil {
		return nil
	}
	return b.last.DeepCopy()
}

// retryable: another writer got there first, so read again.
func retryable(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || errors.Is(err, errStaleCopy)
}

func readState(l *coordinationv1.Lease) (state, error) {
	var s state
	raw := l.Annotations[StateAnnotation]
	if raw == "" {
		return s, nil
	}
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return s, fmt.Errorf("the budget Lease's annotation %s is not readable (fix or remove it): %w", StateAnnotation, err)
	}
	// Oldest first, whatever wrote it: the first unit is the next to expire.
	slices.SortStableFunc(s.Spent, func(a, b Unit) int { return a.At.Compare(b.At) })
	return s, nil
}

// writeState puts s on the Lease. The Lease's own fields say the same for `kubectl get
// lease`: the window's length and when a unit was last spent.
func writeState(l *coordinationv1.Lease, s state, spec Spec, now time.Time) error {
	if s.Spent == nil {
		s.Spent = []Unit{}
	}
	// A cooldown much longer than the window keeps more units than N: at most maxUnits, the
	// oldest dropped first (the window's own units are never more than N).
	if len(s.Spent) > maxUnits {
		s.Spent = s.Spent[len(s.Spent)-maxUnits:]
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[StateAnnotation] = string(b)
	l.Spec.HolderIdentity = ptr.To("alert-rollback")
	l.Spec.LeaseDurationSeconds = ptr.To(int32(min(spec.Window/time.Second, 1<<31-1)))
	l.Spec.RenewTime = &metav1.MicroTime{Time: now}
	return nil
}
