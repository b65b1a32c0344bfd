# imagebake — build, test, lint, bench, demo.
export PATH := $(PATH):/usr/local/go/bin
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/imagebake/imagebake/internal/buildinfo.Version=$(VERSION)
BIN      := bin/imagebake
# The real QEMU tests boot VMs; CI runs them (see .ci/run).
TEST_TIMEOUT ?= 75m
# CI runs packages one at a time (TEST_FLAGS=-p=1) so two packages never
# boot VMs at once on a 2-core machine.
TEST_FLAGS ?=

.PHONY: build test lint bench bench-local demo tools clean golden

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/imagebake

# The test suite: unit tests, the real validators (cloud-init schema,
# systemd-analyze verify, visudo, shellcheck), the served model of Azure, a
# real sshd, and, with IMAGEBAKE_QEMU_TESTS=1, real QEMU bakes.
# The real-QEMU runtime test writes its "runner lifecycle: …" line to
# LIFECYCLE_FILE (go test hides a passing test's output); it is printed last.
LIFECYCLE_FILE := $(shell mktemp -u /tmp/imagebake-lifecycle.XXXXXX)
test:
	$(GO) vet ./...
	IMAGEBAKE_LIFECYCLE_FILE=$(LIFECYCLE_FILE) $(GO) test $(TEST_FLAGS) -timeout $(TEST_TIMEOUT) ./...
	@if [ -s $(LIFECYCLE_FILE) ]; then cat $(LIFECYCLE_FILE); rm -f $(LIFECYCLE_FILE); fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@command -v shellcheck >/dev/null && shellcheck .ci/run scripts/*.sh || true

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The local target's benchmark boots real VMs (minutes under TCG).
bench-local:
	IMAGEBAKE_QEMU_TESTS=1 $(GO) test -run '^$$' -bench BenchmarkLocalBake -benchtime 1x -timeout 40m ./bake

# Regenerate golden files after reviewing a rendering change.
golden:
	$(GO) test ./templates -run TestGolden -update

# Install the tools the tests and the local target use (Debian/Ubuntu).
tools:
	./scripts/install-tools.sh

# The main job on the local default: build the base once (cached), bake
# recipes/local-demo.yaml on QEMU, verify the published version.
demo: build
	./scripts/install-tools.sh
	./$(BIN) base build
	./$(BIN) bake recipes/local-demo.yaml
	./$(BIN) verify local-demo
	./$(BIN) versions list local-demo

clean:
	rm -rf bin
