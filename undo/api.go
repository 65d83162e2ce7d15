package undo

import (
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// getError wraps a failed read of the workload; a missing workload is a refusal.
func getError(kind, ns, name string, err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: %s %s/%s", ErrNotFound, kind, ns, name)
	}
	return fmt.Errorf("get %s %s/%s: %w", kind, ns, name, err)
}

func patchOptions(dryRun bool) metav1.PatchOptions {
	opts := metav1.PatchOptions{FieldManager: "alert-rollback"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return opts
}
