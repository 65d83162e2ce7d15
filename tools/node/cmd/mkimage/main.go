// Command mkimage builds a single-layer linux/amd64 OCI image from files on disk (static Go
// binaries, no base image) and writes it as a tarball `ctr images import` reads, with
// go-containerregistry, the library behind ko and crane. No Docker engine and no registry are
// involved: the node imports the tarball into containerd directly.
//
//	mkimage -o app.tar -tag dev.local/app:v1 -file .bin/app=/app -entrypoint /app
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// nonRoot is the numeric user the images run as: the one ko's default base image uses, so
// kservice.yaml's runAsNonRoot holds without a runAsUser.
const nonRoot = "65532"

// list collects a repeated flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run() error {
	var files, env, cmd list
	out := flag.String("o", "", "output tarball")
	tag := flag.String("tag", "", "image reference, e.g. dev.local/app:v1")
	entrypoint := flag.String("entrypoint", "", "absolute path of the program in the image")
	workdir := flag.String("workdir", "/", "working directory")
	flag.Var(&files, "file", "SRC=DST: a file to put at DST in the image (repeatable)")
	flag.Var(&env, "env", "K=V: an environment variable (repeatable)")
	flag.Var(&cmd, "arg", "an argument after the entrypoint (repeatable)")
	flag.Parse()
	if *out == "" || *tag == "" || *entrypoint == "" || len(files) == 0 {
		return errors.New("need -o, -tag, -entrypoint and at least one -file")
	}
	ref, err := name.NewTag(*tag)
	if err != nil {
		return fmt.Errorf("tag %q: %w", *tag, err)
	}
	layerTar, err := layer(files)
	if err != nil {
		return err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	// containerd picks the image for the node's platform: without these it filters it out.
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Entrypoint = []string{*entrypoint}
	cfg.Config.Cmd = cmd
	cfg.Config.Env = append([]string{"PATH=/"}, env...)
	cfg.Config.WorkingDir = *workdir
	cfg.Config.User = nonRoot
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	if err := tarball.WriteToFile(*out, ref, img); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	return nil
}

// layer returns a tar of files (SRC=DST), with their parent folders, owned by root,
// executable, and dated the Unix epoch so the same binaries make the same image.
func layer(files []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	sort.Strings(files)
	for _, f := range files {
		_, dst, ok := strings.Cut(f, "=")
		if !ok || !path.IsAbs(dst) {
			return nil, fmt.Errorf("-file %q: want SRC=/absolute/DST", f)
		}
		for d := path.Dir(dst); d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var dirList []string
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList) // parents before children
	for _, d := range dirList {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		src, dst, _ := strings.Cut(f, "=")
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: 0o755, Size: int64(len(b)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
