package manifests

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestImageBuild builds cmd/rollback exactly as .ko.yaml tells ko to (the image kservice.yaml
// names), and checks the binary is what the benchmarks measured: static, without file
// paths, without symbol table. A cold node pulls it.
func TestImageBuild(t *testing.T) {
	var ko struct {
		Builds []struct {
			ID      string   `json:"id"`
			Main    string   `json:"main"`
			Env     []string `json:"env"`
			Flags   []string `json:"flags"`
			Ldflags []string `json:"ldflags"`
		} `json:"builds"`
	}
	if err := yaml.UnmarshalStrict(readRepoFile(t, ".ko.yaml"), &ko); err != nil {
		t.Fatalf(".ko.yaml: %v", err)
	}
	if len(ko.Builds) != 1 || ko.Builds[0].Main != "./cmd/rollback" {
		t.Fatalf(".ko.yaml builds %+v; want one build of ./cmd/rollback", ko.Builds)
	}
	b := ko.Builds[0]
	bin := filepath.Join(t.TempDir(), "rollback")
	args := append([]string{"build", "-o", bin}, b.Flags...)
	if len(b.Ldflags) > 0 {
		args = append(args, "-ldflags="+strings.Join(b.Ldflags, " "))
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), append(args, b.Main)...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), b.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Section(".symtab") != nil {
		t.Error("the image's binary has a symbol table; want it stripped (-ldflags='-s -w')")
	}
	if f.Section(".interp") != nil {
		t.Error("the image's binary is dynamically linked; want CGO_ENABLED=0 (ko's base image has no libc)")
	}
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "-trimpath=true") {
		t.Error("the image's binary was built without -trimpath")
	}
	if info, err := os.Stat(bin); err == nil {
		t.Logf("cmd/rollback as the image ships it: %.1f MB", float64(info.Size())/1e6)
	}
}
