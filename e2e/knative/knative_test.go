package knative

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/run"
)

// TestScaleFromZero plays run.KnativeStory with each image of the function: kservice.yaml's
// (./cmd/rollback, as ko builds it) and func's (its scaffold around the root package, run
// by knative.dev/func-go, with func.yaml's settings for it). It prints what it measured; the story itself checks every step
// on the cluster.
func TestScaleFromZero(t *testing.T) {
	images := []struct {
		name, image, tarball string
		env                  []corev1.EnvVar
	}{
		{"kservice", cluster.RollbackImage, "images/rollback.tar", nil},
		// As `func deploy` runs it: with func.yaml's settings for func's runtime.
		{"func", cluster.FuncImage, "images/func.tar", funcRuntimeEnv(t)},
	}
	for _, img := range images {
		t.Run(img.name, func(t *testing.T) {
			story := &run.KnativeStory{
				Kube: kube, Dir: t.TempDir(), KService: "../../kservice.yaml", Image: img.image,
				Namespace: "knative-" + img.name, Logf: t.Logf, Env: img.env,
			}
			res, err := story.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			size := "?"
			if path, err := cluster.ToolPath(img.tarball); err == nil {
				if info, err := os.Stat(path); err == nil {
					size = fmt.Sprintf("%.1f MB", float64(info.Size())/1e6)
				}
			}
			// Printed, not asserted: these vary with the machine and its load.
			// Pod start comes from the API's timestamps, which have a resolution of one second.
			fmt.Printf("knative %-8s image %s (%s, %s): Ready in %d ms; pods %v; cold answer %d ms; pod start %s; cold again %d ms; warm answer %d ms; %s\n",
				img.name, img.image, filepath.Base(img.tarball), size, res.Ready.Milliseconds(), res.Pods,
				res.ColdAnswer.Milliseconds(), res.PodStartText(), res.ColdAgain.Milliseconds(), res.WarmAnswer.Milliseconds(), res.Action)
		})
	}
}
