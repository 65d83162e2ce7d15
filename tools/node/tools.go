//go:build tools

// Package tools records the library this module builds images with, so `go mod tidy` keeps it.
package tools

import _ "github.com/google/go-containerregistry/pkg/v1/tarball"
