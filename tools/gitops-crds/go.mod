// Module crds only gives `go mod download` a neutral place to run: it requires nothing.
// The CRDs themselves are pinned in crds.txt and copied from the module zips by fetch.sh.
module github.com/sre-kit/alert-rollback/tools/gitops-crds

go 1.26
