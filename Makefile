# Two commands do everything on a fresh machine:
#   make demo   the function rolling back a real broken Deployment on a local control plane
#   make test   every test, including those on the real control plane and real Alertmanager
# Both build the pinned tools they need into .bin/ first, once (later runs reuse them).

SHELL := /bin/bash
BIN   := $(CURDIR)/.bin
export ROLLBACK_TOOLS_DIR := $(BIN)
export GOFLAGS ?= -buildvcs=false

KUBE_BINS := kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd
# Every Kubernetes binary reports the version it is built from: Knative's components refuse an
# API server that says v0.0.0-master, and a Node would report it too.
KUBE_VERSION := v1.35.4
KUBE_LDFLAGS := $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(KUBE_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=35 \
	-X $(p).gitTreeState=clean -X $(p).buildDate=2026-04-01T00:00:00Z)
AM_BINS   := alertmanager amtool
# Argo CD's and Flux's own CRDs, for the GitOps tests: copied from their pinned modules.
GITOPS_CRDS := $(addprefix $(BIN)/crds/,argocd-application.yaml flux-kustomization.yaml flux-helmrelease.yaml)
TOOLS     := $(addprefix $(BIN)/,$(KUBE_BINS) $(AM_BINS) promtool rollback) $(GITOPS_CRDS)
# The demo needs no promtool or amtool.
DEMO_TOOLS := $(addprefix $(BIN)/,$(KUBE_BINS) alertmanager rollback)

# progress prints one line per 100 packages compiled, so a first build that takes
# minutes is never silent.
progress = awk '{ n++ } n % 100 == 0 { printf "    ... %d packages compiled\n", n; fflush() } END { printf "    ... %d packages compiled, done\n", n }'

.PHONY: all build tools test unit e2e demo bench cluster vet fmt fuzz clean
all: build

build:
	go build ./...
	cd e2e && go build ./...

tools: $(TOOLS)

# The control plane is rebuilt only when its pins (tools/kube/go.mod, go.sum) change.
$(addprefix $(BIN)/,$(KUBE_BINS)) &: tools/kube/go.mod tools/kube/go.sum tools/kube/cmd/etcd/main.go
	@echo "==> building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy (k8s.io/kubernetes $(KUBE_VERSION)) and etcd v3.6.5"
	@echo "    first time only: about 10 minutes on 2 cores; cached in .bin/ afterwards"
	@mkdir -p $(BIN)
	@set -o pipefail; cd tools/kube && go build -v -ldflags '$(KUBE_LDFLAGS)' -o $(BIN)/ \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
		k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy ./cmd/etcd 2>&1 | $(progress)
	@touch $(addprefix $(BIN)/,$(KUBE_BINS))

$(addprefix $(BIN)/,$(AM_BINS)) &: tools/alertmanager/go.mod tools/alertmanager/go.sum
	@echo "==> building alertmanager and amtool v0.31.1 (first time only: about 2 minutes)"
	@mkdir -p $(BIN)
	@set -o pipefail; cd tools/alertmanager && go build -v -o $(BIN)/ \
		github.com/prometheus/alertmanager/cmd/alertmanager github.com/prometheus/alertmanager/cmd/amtool 2>&1 | $(progress)
	@touch $(addprefix $(BIN)/,$(AM_BINS))

$(BIN)/promtool: tools/promtool/go.mod tools/promtool/go.sum
	@echo "==> building promtool (prometheus v0.316.0) (first time only: about 5 minutes)"
	@mkdir -p $(BIN)
	@set -o pipefail; cd tools/promtool && go build -v -o $(BIN)/ github.com/prometheus/prometheus/cmd/promtool 2>&1 | $(progress)
	@touch $@

$(GITOPS_CRDS) &: tools/gitops-crds/crds.txt tools/gitops-crds/fetch.sh
	@echo "==> fetching Argo CD's and Flux's CRDs from their pinned modules (first time only: ~60 MB of module zips)"
	@tools/gitops-crds/fetch.sh $(BIN)/crds
	@touch $(GITOPS_CRDS)

# The function's own server binary, which the end-to-end tests and the demo run, built as the
# image ships it (.ko.yaml): static, no file paths, no symbol table or DWARF.
ROLLBACK_BUILD := CGO_ENABLED=0 go build -trimpath -ldflags='-s -w'
$(BIN)/rollback: $(shell find . -name '*.go' -not -path './tools/*' -not -path './e2e/*' -not -path './.bin/*') go.mod go.sum
	@echo "==> building the function (cmd/rollback)"
	@mkdir -p $(BIN)
	$(ROLLBACK_BUILD) -o $@ ./cmd/rollback

vet:
	go vet ./...
	cd e2e && go vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	go test -count=1 ./...

# ROLLBACK_REQUIRE_TOOLS turns a missing tool into a failure instead of a skip. -p 1: each
# e2e package starts its own control plane; two at once on 2 cores only makes both slower.
e2e: tools
	cd e2e && ROLLBACK_REQUIRE_TOOLS=1 go test -p 1 -count=1 -timeout 40m ./...

test: fmt vet tools
	go test -count=1 -race ./...
	cd e2e && ROLLBACK_REQUIRE_TOOLS=1 go test -p 1 -count=1 -timeout 40m ./...

# Native Go fuzzing, FUZZTIME per target (60s by default): `make fuzz FUZZTIME=10m`. The seed
# corpora (and any crasher kept in testdata/fuzz) already run under `make test`. A crasher is
# written to the package's testdata/fuzz/<target>/: commit it as a regression seed.
# Minimizing a new input can take a whole minute of slow handler runs by default, which
# looks like a stall: keep it short. FUZZFLAGS passes more, e.g. -parallel=1.
FUZZTIME ?= 60s
FUZZMINIMIZETIME ?= 5s
FUZZFLAGS ?=
FUZZ_TARGETS := ./alert:FuzzDecode .:FuzzDecodeHTTP .:FuzzHandle .:FuzzHandleAlert ./undo:FuzzState

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "==> fuzzing $$name in $$pkg for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $(FUZZFLAGS) $$pkg; \
	done

demo: $(DEMO_TOOLS)
	cd e2e && go run ./cmd/demo

# A local control plane for trying the function by hand; Ctrl-C stops it.
cluster: $(addprefix $(BIN)/,$(KUBE_BINS))
	cd e2e && go run ./cmd/cluster

# Benchmarks print numbers; they are not part of make test and never fail on a timing.
# The side-by-side table: the function (built binary, over HTTP) and `kubectl rollout undo`
# on the real control plane, requests from the API server's audit log (see README).
bench: tools
	go test -run XXX -bench . -benchmem ./...
	cd e2e && ROLLBACK_REQUIRE_TOOLS=1 go test -run XXX -bench SideBySide -benchtime 1x -timeout 20m .

clean:
	rm -rf $(BIN)
