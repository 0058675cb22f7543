# The two commands a newcomer needs: `make lab` and `make test`.
# Both install what they need (scripts/deps.sh) and build first.

SHELL      := /bin/bash
GO         ?= go
BIN        := $(CURDIR)/bin
TOOLS      := $(BIN)/tools
GOTESTSUM  := $(TOOLS)/gotestsum
# LAB_STORE=etcd: the mini-lab on a three-member etcd cluster with two
# controller replicas (make lab also shows failover there).
LAB_STORE  ?= bolt
ifeq ($(LAB_STORE),etcd)
TOPO       ?= containerlab/mini-lab-etcd.clab.yml
else
TOPO       ?= containerlab/mini-lab.clab.yml
endif
# Go packages whose tests need a full kernel (VRF, VLAN); they re-run
# themselves in the VM when the host kernel lacks those.
E2E_PKGS   := ./integration/e2e/

# Every parser's fuzz target, as package:target; `make test` runs each for
# FUZZTIME (crashers land in the package's testdata/fuzz and are replayed
# by every later go test).
FUZZ       := ./lldp/:FuzzFrameUnmarshal ./lldp/:FuzzHandleFrame ./integration/lab/:FuzzParse \
              ./nft/:FuzzCounterName ./controlplane/model/:FuzzParsePortRange
FUZZTIME   ?= 10s

.PHONY: all deps build generate test fuzz e2e lab lab-down bench lint clean

all: build

deps:
	@./scripts/deps.sh

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

generate: deps
	PATH=$(TOOLS):$$PATH protoc -I controlplane/api/v1 -I /usr/include \
		--go_out=controlplane/api/v1 --go_opt=paths=source_relative \
		--go-grpc_out=controlplane/api/v1 --go-grpc_opt=paths=source_relative \
		controlplane/api/v1/fabric.proto

# Unit tests, privileged host tests (namespaces, veth) and the full-kernel
# tests (in a qemu VM when this kernel has no VRFs), with a summary at the end.
test: deps build
	$(GOTESTSUM) --format testname --format-hide-empty-pkg -- -count=1 -timeout 30m ./...
	@$(MAKE) --no-print-directory fuzz

fuzz:
	@for f in $(FUZZ); do \
		echo "fuzz: $${f#*:} in $${f%%:*} for $(FUZZTIME)"; \
		FABRIC_NO_VM=1 $(GO) test -run '^$$' -fuzz "^$${f#*:}$$" -fuzztime $(FUZZTIME) "$${f%%:*}" >/tmp/fuzz.$$$$.log 2>&1 \
			|| { cat /tmp/fuzz.$$$$.log; rm -f /tmp/fuzz.$$$$.log; exit 1; }; \
		rm -f /tmp/fuzz.$$$$.log; \
	done

e2e: deps build
	$(GOTESTSUM) --format standard-verbose -- -count=1 -timeout 30m $(E2E_PKGS)

# Bring up the mini-lab, allocate both machines and check the leaves' kernels.
# LAB_KEEP=1 leaves it running (in the VM: an interactive shell);
# LAB_STORE=etcd runs the etcd variant.
lab: deps build
	@LAB_STORE=$(LAB_STORE) ./scripts/lab.sh $(TOPO)

lab-down: build
	$(BIN)/fabric-lab down $(TOPO)

bench: deps build
	@./scripts/bench.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf $(BIN)

# Debian packages fabric-agent and fabric-controller (nfpm, pinned) into dist/.
.PHONY: deb
deb: build
	@./scripts/deb.sh
