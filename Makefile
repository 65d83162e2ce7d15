# Two commands do everything on a fresh machine:
#   make demo   the function rolling back a real broken Deployment on a local control plane
#   make test   every test, including those on the real control plane and real Alertmanager,
#               and on a real node with Knative Serving (as root)
# (and make demo-knative: the demo on a real node, the function woken from zero by Knative;
#  make demo-loop: the whole loop, kube-state-metrics -> Prometheus -> Alertmanager -> Knative ->
#  undo -> healthy, printed as a timeline)
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

.PHONY: all build tools node-tools node-packages knative-tools loop-tools argo-tools test unit e2e demo demo-knative demo-loop bench cluster vet fmt fuzz clean
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

# promtool and the Prometheus server come from one module in one `go build`, so they share every
# package compiled. The server is built without the `builtinassets` tag: no web UI, which the
# loop test does not need (its HTTP API is all it uses).
PROM_BINS := prometheus promtool
$(addprefix $(BIN)/,$(PROM_BINS)) &: tools/promtool/go.mod tools/promtool/go.sum
	@echo "==> building prometheus and promtool (prometheus v0.316.0) (first time only: minutes)"
	@mkdir -p $(BIN)
	@set -o pipefail; cd tools/promtool && go build -v -o $(BIN)/ \
		github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool 2>&1 | $(progress)
	@touch $(addprefix $(BIN)/,$(PROM_BINS))

# The whole loop (e2e/loop, make demo-loop) runs the Prometheus server and kube-state-metrics
# besides the node and Knative.
LOOP_TOOLS := $(addprefix $(BIN)/,prometheus kube-state-metrics)
loop-tools: knative-tools $(LOOP_TOOLS)

# kube-state-metrics, which the loop test runs against the real apiserver.
KSM_VERSION := v2.20.0
$(BIN)/kube-state-metrics: tools/kube-state-metrics/go.mod tools/kube-state-metrics/go.sum
	@echo "==> building kube-state-metrics $(KSM_VERSION) (first time only: minutes)"
	@mkdir -p $(BIN)
	@set -o pipefail; cd tools/kube-state-metrics && go build -v \
		-ldflags '-X github.com/prometheus/common/version.Version=$(KSM_VERSION)' \
		-o $(BIN)/kube-state-metrics k8s.io/kube-state-metrics/v2 2>&1 | $(progress)
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

# ---- The local node: containerd, runc and CNI from Debian; kubelet and kube-proxy (above);
# CoreDNS; and OCI images built with go-containerregistry, imported with ctr (no registry).
# The node's runtime is pinned to the Debian 12 versions it was proven with (FACTS.md); the
# rest are the distribution's tools.
NODE_PINNED   := containerd=1.6.20~ds1-1+deb12u3 runc=1.1.5+ds1-1+deb12u1 containernetworking-plugins=1.1.1+ds1-3+b5
NODE_PACKAGES := $(NODE_PINNED) iptables conntrack util-linux iproute2
IMAGES    := $(BIN)/images
NODE_IMAGES := $(addprefix $(IMAGES)/,pause.tar app.tar app-crash.tar rollback.tar func.tar)
NODE_TOOLS := $(addprefix $(BIN)/,kubelet kube-proxy coredns) $(NODE_IMAGES)
node-tools: node-packages $(NODE_TOOLS)

# Installed with apt-get when one is missing or not at its pin: containerd, runc and the CNI
# plugins (/usr/lib/cni) are what the node runs; iptables and conntrack are what kube-proxy
# drives.
node-packages:
	@missing=; for c in containerd containerd-shim-runc-v2 ctr runc iptables conntrack nsenter unshare ip; do \
		command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] || missing="$$missing cni-plugins"; \
	for p in $(NODE_PINNED); do \
		v=$$(dpkg-query -W -f='$${Version}' $${p%%=*} 2>/dev/null); [ "$$v" = "$${p#*=}" ] || missing="$$missing $$p(have:$${v:-none})"; done; \
	if [ -n "$$missing" ]; then \
		echo "==> installing Debian packages for the node (missing:$$missing)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades $(NODE_PACKAGES) >/dev/null && echo "    done"; \
	fi

NODE_SRC := $(shell find tools/node -name '*.go') tools/node/go.mod tools/node/go.sum
$(BIN)/mkimage $(BIN)/pause $(BIN)/app &: $(NODE_SRC)
	@echo "==> building mkimage (go-containerregistry v0.22.1), pause and app"
	@mkdir -p $(BIN)
	@set -o pipefail; cd tools/node && CGO_ENABLED=0 go build -v -o $(BIN)/ ./cmd/mkimage ./cmd/pause ./cmd/app 2>&1 | $(progress)

$(BIN)/coredns: tools/coredns/go.mod tools/coredns/go.sum tools/coredns/cmd/coredns/main.go
	@echo "==> building CoreDNS v1.15.0 (kubernetes plugin; first time only: about 3 minutes)"
	@mkdir -p $(BIN)
	@set -o pipefail; cd tools/coredns && CGO_ENABLED=0 go build -v -o $(BIN)/ ./cmd/coredns 2>&1 | $(progress)

FUNCTION_SRC := $(shell find . -name '*.go' -not -path './tools/*' -not -path './e2e/*' -not -path './.bin/*') go.mod go.sum

# kservice.yaml's image: ./cmd/rollback, static, as ko builds it.
$(IMAGES)/rollback.tar: $(FUNCTION_SRC) $(BIN)/mkimage
	@echo "==> image dev.local/alert-rollback:e2e (static ./cmd/rollback)"
	@mkdir -p $(IMAGES)/bin
	$(ROLLBACK_BUILD) -o $(IMAGES)/bin/rollback ./cmd/rollback
	$(BIN)/mkimage -o $@ -tag dev.local/alert-rollback:e2e -file $(IMAGES)/bin/rollback=/ko-app/rollback -entrypoint /ko-app/rollback
	@ls -l $@ | awk '{ printf "    %s: %.1f MB\n", "dev.local/alert-rollback:e2e", $$5/1e6 }'

# What `func deploy` builds with its host builder: the scaffold in tools/func (module s)
# around the root package, run by knative.dev/func-go, static, at /func/f.
$(IMAGES)/func.tar: $(FUNCTION_SRC) tools/func/main.go tools/func/go.mod tools/func/go.sum $(BIN)/mkimage
	@echo "==> image dev.local/alert-rollback-func:e2e (func's scaffold, knative.dev/func-go v0.22.0)"
	@mkdir -p $(IMAGES)/bin
	@# As func's host builder does: the scaffold in a build folder of its own, tidied against the
	@# function's current go.mod (it replaces the function's module with this folder).
	@rm -rf $(BIN)/build/func && mkdir -p $(BIN)/build/func && cp tools/func/main.go tools/func/go.mod tools/func/go.sum $(BIN)/build/func/
	cd $(BIN)/build/func && go mod edit -replace github.com/sre-kit/alert-rollback=$(CURDIR) && go mod tidy \
		&& CGO_ENABLED=0 go build -trimpath -o $(IMAGES)/bin/f .
	@rm -rf $(BIN)/build/func
	$(BIN)/mkimage -o $@ -tag dev.local/alert-rollback-func:e2e -file $(IMAGES)/bin/f=/func/f -entrypoint /func/f -env LISTEN_ADDRESS=[::]:8080
	@ls -l $@ | awk '{ printf "    %s: %.1f MB\n", "dev.local/alert-rollback-func:e2e", $$5/1e6 }'

$(IMAGES)/pause.tar: $(BIN)/pause $(BIN)/mkimage
	@mkdir -p $(IMAGES)
	$(BIN)/mkimage -o $@ -tag dev.local/pause:3.10 -file $(BIN)/pause=/pause -entrypoint /pause

$(IMAGES)/app.tar: $(BIN)/app $(BIN)/mkimage
	@mkdir -p $(IMAGES)
	$(BIN)/mkimage -o $@ -tag dev.local/app:v1 -file $(BIN)/app=/app -entrypoint /app

# Revision 2 of the crash case: the same program told to exit at once.
$(IMAGES)/app-crash.tar: $(BIN)/app $(BIN)/mkimage
	@mkdir -p $(IMAGES)
	$(BIN)/mkimage -o $@ -tag dev.local/app:v2-crash -file $(BIN)/app=/app -entrypoint /app -arg -crash

# ---- Knative Serving v0.50.0 on the node: its five programs built from the module into local
# images, its release YAMLs from the same module's source (plus the networking and caching CRDs
# from the versions it pins), and Traefik v3.6.12's Knative provider as the ingress.
KNATIVE_CMDS   := controller webhook activator autoscaler queue
KNATIVE_BINS   := $(addprefix $(BIN)/knative/bin/,$(KNATIVE_CMDS))
KNATIVE_IMAGES := $(addprefix $(IMAGES)/knative-,$(addsuffix .tar,$(KNATIVE_CMDS)))
KNATIVE_YAML   := $(BIN)/knative/serving-crds.yaml $(BIN)/knative/serving-core.yaml
KNATIVE_TOOLS  := $(KNATIVE_IMAGES) $(KNATIVE_YAML) $(BIN)/traefik
knative-tools: node-tools $(KNATIVE_TOOLS)

$(KNATIVE_BINS) &: tools/knative/go.mod tools/knative/go.sum
	@echo "==> building Knative Serving v0.50.0: $(KNATIVE_CMDS) (first time only: about 4 minutes)"
	@mkdir -p $(BIN)/knative/bin
	@set -o pipefail; cd tools/knative && CGO_ENABLED=0 go build -v -trimpath -o $(BIN)/knative/bin/ \
		$(addprefix knative.dev/serving/cmd/,$(KNATIVE_CMDS)) 2>&1 | $(progress)
	@touch $(KNATIVE_BINS)

# As ko lays them out: /ko-app/<name>, the path Knative's own manifests expect.
$(IMAGES)/knative-%.tar: $(BIN)/knative/bin/% $(BIN)/mkimage
	@mkdir -p $(IMAGES)
	$(BIN)/mkimage -o $@ -tag dev.local/knative/$*:v0.50.0 -file $<=/ko-app/$* -entrypoint /ko-app/$*

# The release YAMLs, in the order Knative's release concatenates them; the module zip drops
# the symlinks serving's config/core has into knative.dev/networking and knative.dev/caching,
# so those come from the modules themselves. Nothing is edited here: the harness changes only
# the image names and the autoscaler's test timings when it applies them.
$(KNATIVE_YAML) &: tools/knative/go.mod tools/knative/go.sum
	@echo "==> Knative Serving v0.50.0 release YAMLs from the module source"
	@mkdir -p $(BIN)/knative
	@set -eo pipefail; cd tools/knative; go mod download knative.dev/serving knative.dev/networking knative.dev/caching; \
	s=$$(go list -m -f '{{.Dir}}' knative.dev/serving)/config/core; \
	n=$$(go list -m -f '{{.Dir}}' knative.dev/networking)/config; \
	c=$$(go list -m -f '{{.Dir}}' knative.dev/caching)/config; \
	for f in $$s/300-resources/*.yaml $$n/certificate.yaml $$n/domain-claim.yaml $$n/ingress.yaml \
		$$n/serverlessservice.yaml $$c/image.yaml; do echo "---"; echo "# $${f#*/pkg/mod/}"; cat $$f; done > $(BIN)/knative/serving-crds.yaml; \
	for f in $$s/100-namespace.yaml $$s/200-serviceaccount.yaml $$s/200-roles/*.yaml $$s/300-knativecertificate.yaml \
		$$s/configmaps/*.yaml $$n/config-network.yaml $$s/999-cache.yaml $$s/deployments/activator.yaml \
		$$s/deployments/autoscaler.yaml $$s/deployments/controller.yaml $$s/deployments/webhook.yaml \
		$$s/webhooks/*.yaml; do echo "---"; echo "# $${f#*/pkg/mod/}"; cat $$f; done > $(BIN)/knative/serving-core.yaml
	@echo "    $(BIN)/knative/serving-crds.yaml, $(BIN)/knative/serving-core.yaml"

# Traefik is built as the main module from a copy of its module source (tools/traefik/README.md
# says why), in a folder of its own that is removed afterwards.
TRAEFIK := $(shell cat tools/traefik/version)
$(BIN)/traefik: tools/traefik/version
	@echo "==> building Traefik $(lastword $(subst @, ,$(TRAEFIK))) with its Knative provider (first time only: about 5 minutes)"
	@mkdir -p $(BIN)/build
	@set -eo pipefail; src=$(BIN)/build/traefik; rm -rf $$src; \
	dir=$$(go mod download -json $(TRAEFIK) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	cp -r $$dir $$src; chmod -R u+w $$src; \
	cd $$src && CGO_ENABLED=0 go build -v -trimpath \
		-ldflags '-X github.com/traefik/traefik/v3/pkg/version.Version=$(lastword $(subst @, ,$(TRAEFIK)))' \
		-o $(BIN)/traefik ./cmd/traefik 2>&1 | $(progress); \
	rm -rf $$src

# The Argo Rollouts controller and its CRDs, for the Rollout test on the real node. Built as the
# main module from a copy of its module source, as Traefik is (tools/argo-rollouts/README.md says
# why). v1.10.2's go.mod asks for go >= 1.26.10: GOTOOLCHAIN names the toolchain for this rule
# only (the go command fetches it from the module proxy once, ~76 MB).
ARGO_ROLLOUTS := $(shell cat tools/argo-rollouts/version)
ARGO_ROLLOUTS_VERSION := $(lastword $(subst @, ,$(ARGO_ROLLOUTS)))
ARGO_TOOLS := $(BIN)/rollouts-controller $(BIN)/argo-rollouts-crds.yaml
# Only e2e/node's TestArgoRollout runs them.
argo-tools: $(ARGO_TOOLS)
$(ARGO_TOOLS) &: tools/argo-rollouts/version
	@echo "==> building the Argo Rollouts controller $(ARGO_ROLLOUTS_VERSION) and its CRDs (first time only: about 10 minutes)"
	@mkdir -p $(BIN)/build
	@set -eo pipefail; export GOTOOLCHAIN=go1.27.3; src=$(BIN)/build/argo-rollouts; rm -rf $$src; \
	dir=$$(go mod download -json $(ARGO_ROLLOUTS) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	cp -r $$dir $$src; chmod -R u+w $$src; \
	for f in $$dir/manifests/crds/*-crd.yaml; do echo "---"; echo "# $${f#*/pkg/mod/}"; cat $$f; done > $(BIN)/argo-rollouts-crds.yaml; \
	cd $$src && CGO_ENABLED=0 go build -v -trimpath \
		-ldflags '-X github.com/argoproj/argo-rollouts/utils/version.version=$(ARGO_ROLLOUTS_VERSION:v%=%)' \
		-o $(BIN)/rollouts-controller ./cmd/rollouts-controller 2>&1 | $(progress); \
	rm -rf $$src
	@touch $(ARGO_TOOLS)

vet:
	go vet ./...
	cd e2e && go vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	go test -count=1 ./...

# ROLLBACK_REQUIRE_TOOLS turns a missing tool into a failure instead of a skip. -p 1: each
# e2e package starts its own control plane; two at once on 2 cores only makes both slower.
# The real-node and Knative packages (e2e/node, e2e/knative) need root, the node's Debian
# packages (installed when missing) and their images.
# The Knative package runs last and verbose, so its measurements (cold and warm answers, pod
# start, image sizes) and the cluster's progress are printed; its whole log is kept in .bin/.
# The loop package (e2e/loop, root too) runs after it, verbose as well: its timelines.
KNATIVE_LOG := $(BIN)/knative-test.log
LOOP_LOG    := $(BIN)/loop-test.log
define e2e_tests
	cd e2e && ROLLBACK_REQUIRE_TOOLS=1 go test -p 1 -count=1 -timeout 40m $$(go list ./... | grep -v -E '/e2e/(knative|loop)$$')
	@echo "==> e2e/knative (verbose; full log in $(KNATIVE_LOG))"
	@set -o pipefail; cd e2e && ROLLBACK_REQUIRE_TOOLS=1 go test -count=1 -timeout 20m -v ./knative/ 2>&1 | tee $(KNATIVE_LOG) \
		| grep --line-buffered -E '^(knative |\[ *[0-9.]+s\]|--- |ok |FAIL|PASS)'
	@echo "==> e2e/loop (verbose; full log in $(LOOP_LOG))"
	@set -o pipefail; cd e2e && ROLLBACK_REQUIRE_TOOLS=1 go test -count=1 -timeout 20m -v ./loop/ 2>&1 | tee $(LOOP_LOG) \
		| grep --line-buffered -E '^(loop[: ]|\[ *[0-9.]+s\]| +[+-][0-9.]+ s |[A-Za-z]+ on Deployment|the function.s own|timeline|--- |ok |FAIL|PASS)'
endef

e2e: tools loop-tools argo-tools
	$(e2e_tests)

test: fmt vet tools loop-tools argo-tools
	go test -count=1 -race ./...
	$(e2e_tests)

# Native Go fuzzing, FUZZTIME per target (60s by default): `make fuzz FUZZTIME=10m`. The seed
# corpora (and any crasher kept in testdata/fuzz) already run under `make test`. A crasher is
# written to the package's testdata/fuzz/<target>/: commit it as a regression seed.
# Minimizing a new input can take a whole minute of slow handler runs by default, which
# looks like a stall: keep it short. FUZZFLAGS passes more, e.g. -parallel=1.
FUZZTIME ?= 60s
FUZZMINIMIZETIME ?= 5s
FUZZFLAGS ?=
FUZZ_TARGETS := ./internal/alert:FuzzDecode .:FuzzDecodeHTTP .:FuzzHandle .:FuzzHandleAlert ./internal/undo:FuzzState

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "==> fuzzing $$name in $$pkg for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $(FUZZFLAGS) $$pkg; \
	done

demo: $(DEMO_TOOLS)
	cd e2e && go run ./cmd/demo

# A local control plane for trying the function by hand; Ctrl-C stops it. With KNATIVE=1, a
# real node with Knative Serving in a private network namespace (root).
ifeq ($(KNATIVE),1)
cluster: $(addprefix $(BIN)/,$(KUBE_BINS)) knative-tools
	cd e2e && go run ./cmd/cluster -knative
else
cluster: $(addprefix $(BIN)/,$(KUBE_BINS))
	cd e2e && go run ./cmd/cluster
endif

# The product's claim on a real node with Knative Serving: scale to zero, an Alertmanager
# alert wakes the function, it rolls back, scales to zero again. Ends with one summary line.
demo-knative: $(DEMO_TOOLS) knative-tools
	cd e2e && go run ./cmd/demo-knative

# The whole loop on a real node: two bad revisions applied with kubectl, healed by the
# components alone; prints each step's time since the bad rollout and writes the timeline
# as an SVG. Ends with the line `loop: bad rollout -> healthy in ...`.
demo-loop: $(DEMO_TOOLS) loop-tools
	cd e2e && go run ./cmd/demo-loop -svg $(BIN)/loop.svg

# Benchmarks print numbers; they are not part of make test and never fail on a timing.
# The side-by-side table: the function (built binary, over HTTP) and `kubectl rollout undo`
# on the real control plane, requests from the API server's audit log (see README).
bench: tools
	go test -run XXX -bench . -benchmem ./...
	cd e2e && ROLLBACK_REQUIRE_TOOLS=1 go test -run XXX -bench SideBySide -benchtime 1x -timeout 20m .

clean:
	rm -rf $(BIN)
